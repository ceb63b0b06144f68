"""Intent classification two ways: a classification head + LoRA, and the chat model naming the label (notebook 06).

    ds = intent_dataset("en")                          # text, label (index into INTENTS), intent
    model, tok = load_classifier("auto", r=16)         # sequence-classification head + LoRA (peft SEQ_CLS)
    run = train_classifier(model, tok, ds, max_steps=60)
    pred = predict(model, tok, ds["test"]["text"])     # labels, seconds, messages per second
    chat = ask_labels(chat_model, chat_tok, ds["test"]["text"], lang="en")   # the generative baseline

Training is transformers' `Trainer` with dynamic padding (DataCollatorWithPadding) and, against class
imbalance, an optional weighted cross-entropy through the Trainer's `compute_loss_func`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ftlib import data, env, metrics, models, recipe, train

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


def intent_dataset(lang: str = "en", seed: int = 0):
    """The course splits as classification rows: text (the customer's message), label (index into INTENTS), intent.

    Taught in notebook 06.
    """
    course = data.course_dataset(lang, seed)
    return course.map(lambda row: {"text": row["prompt"][-1]["content"], "label": INTENTS.index(row["intent"])},
                      remove_columns=[c for c in course["train"].column_names if c != "intent"])


def keep_few(train_split, intents: Sequence[str], keep: int = 3, seed: int = 0):
    """The training split with only `keep` rows of each of `intents` (the others untouched): an imbalanced set.

    Taught in notebook 06.
    """
    unknown = set(intents) - set(INTENTS)
    if unknown:
        raise ValueError(f"unknown intents {sorted(unknown)}; choose from data.INTENTS")
    shuffled = train_split.shuffle(seed=seed)
    seen: dict[str, int] = {}
    picked = []
    for i, intent in enumerate(shuffled["intent"]):
        seen[intent] = seen.get(intent, 0) + 1
        if intent not in intents or seen[intent] <= keep:
            picked.append(i)
    return shuffled.select(picked)


def lora_config(model, r: int = recipe.R, lora_alpha: int | None = None, lora_dropout: float = recipe.LORA_DROPOUT,
                layers: int | None = None):
    """recipe.lora_config for a classifier: LoRA on every Linear layer, task type SEQ_CLS.

    With SEQ_CLS, peft adds the new head ("score" or "classifier") to modules_to_save: it is trained in full
    (it starts random) and saved with the adapter. layers: adapt only the top `layers` transformer blocks
    (peft's layers_to_transform); the backward pass then stops below them, so a step costs less.
    Taught in notebook 06.
    """
    config = recipe.lora_config(r, lora_alpha, lora_dropout, task_type="SEQ_CLS")
    if layers is not None:
        total = model.config.num_hidden_layers
        if not 0 < layers <= total:
            raise ValueError(f"layers must be between 1 and {total} (this model's blocks), not {layers}")
        config.layers_to_transform = list(range(total - layers, total))
    return config


def load_classifier(name: str = "auto", lang: str = "en", r: int = recipe.R, lora_alpha: int | None = None,
                    lora_dropout: float = recipe.LORA_DROPOUT, layers: int | None = None, seed: int = 0):
    """(model, tokenizer): the model with a new classification head for the 12 intents, wrapped in LoRA.

    The head reads the hidden state of the last non-padding token, so the model needs a pad token id
    (models.load sets one). layers: LoRA on the top `layers` blocks only (None: all). Trainable weights are
    kept in fp32 (a T4 computes in fp16, and the Trainer cannot unscale fp16 gradients). Taught in notebook 06.
    """
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    env.seed_everything(seed)  # the head starts random
    model, tokenizer = models.load(name, lang=lang, model_class=AutoModelForSequenceClassification,
                                   num_labels=len(INTENTS), id2label=dict(enumerate(INTENTS)),
                                   label2id={intent: i for i, intent in enumerate(INTENTS)})
    model = get_peft_model(model, lora_config(model, r, lora_alpha, lora_dropout, layers))
    recipe.fp32_trainables(model)
    return model, tokenizer


def trainable_params(model) -> int:
    """How many weights training updates. Taught in notebook 06."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def class_weights(labels, n_classes: int = len(INTENTS)) -> torch.Tensor:
    """One weight per class, n_rows / (n_classes x rows of that class): scikit-learn's "balanced" weights.

    A class with half the rows weighs twice as much in the loss. Taught in notebook 06.
    """
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    missing = set(range(n_classes)) - set(labels.tolist())
    if missing:
        raise ValueError(f"classes {sorted(missing)} have no rows: a weight cannot make up for no examples")
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(n_classes), y=labels), dtype=torch.float32)


def weighted_loss(weights: torch.Tensor):
    """A `compute_loss_func` for the Trainer: cross-entropy with one weight per class. Taught in notebook 06."""

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


def _compute_metrics(prediction) -> dict[str, float]:
    true, pred = prediction.label_ids, prediction.predictions.argmax(-1)
    return {"accuracy": metrics.accuracy(true, pred), "macro_f1": metrics.macro_f1(true, pred)}


def train_classifier(model, tokenizer, dataset, output_dir: str | Path | None = None, *, lr: float = 1e-3,
                     max_steps: int = -1, epochs: float = 1.0, batch: int = 16, eval_steps: int | None = 10,
                     max_length: int = 128, weights: torch.Tensor | None = None, seed: int = 0,
                     live: bool = True) -> ClassifierRun:
    """Train the classifier with transformers' Trainer on dataset["train"] (text and label columns).

    Messages are tokenized without padding; DataCollatorWithPadding pads each batch to its longest message,
    and batches group messages of similar length. Every `eval_steps` the Trainer reports loss, accuracy and
    macro-F1 on dataset["validation"] (eval_steps=None: no evaluation, no validation split needed).
    weights: one per class (class_weights) for a weighted cross-entropy against class imbalance.
    live: a loss plot and the Trainer's progress table while training; live=False trains silently.
    Nothing is saved (save_strategy="no"): the trained model is `model`, changed in place. Taught in notebook 06.
    """
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    splits = ("train", "validation") if eval_steps else ("train",)
    missing = [split for split in splits if split not in dataset]
    if missing:
        raise ValueError(f"dataset lacks {missing}: give splits with text and label columns (intent_dataset)")
    env.seed_everything(seed)
    tokenized = {split: dataset[split].map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=max_length),
                                           batched=True, remove_columns=["text", "intent"])
                 for split in splits}
    args = TrainingArguments(
        output_dir=str(output_dir or env.runs_dir() / "06_classifier"), learning_rate=lr, max_steps=max_steps,
        num_train_epochs=epochs, per_device_train_batch_size=batch, per_device_eval_batch_size=max(batch, 16),
        lr_scheduler_type="cosine", warmup_steps=0.1, eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps, train_sampling_strategy="group_by_length", save_strategy="no", logging_steps=1,
        disable_tqdm=not live, **recipe.trainer_basics(seed))
    trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"],
                      eval_dataset=tokenized.get("validation"), processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_compute_metrics,
                      compute_loss_func=None if weights is None else weighted_loss(weights),
                      callbacks=[train.LiveLoss("classifier")] if live else [])
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
    """Predicted intents for a list of messages, how long they took, and (generative) the raw answers."""

    labels: list[str]
    seconds: float
    answers: list[str] | None = None

    @property
    def per_second(self) -> float:
        """Messages classified per second."""
        return len(self.labels) / self.seconds if self.seconds else float("nan")

    def scores(self, true: list[str]) -> dict[str, float]:
        """Accuracy, macro-F1, share of "unknown" answers, messages per second.

        Macro-F1 averages over the intents that occur in `true` or in the predictions; "unknown" is no
        intent of its own: it only costs the true intent its recall.
        """
        if len(true) != len(self.labels):
            raise ValueError(f"{len(self.labels)} predictions but {len(true)} true labels")
        seen = set(true) | set(self.labels)
        return {"accuracy": metrics.accuracy(true, self.labels),
                "macro-F1": metrics.macro_f1(true, self.labels, labels=[i for i in INTENTS if i in seen]),
                "unknown": sum(label == UNKNOWN for label in self.labels) / len(self.labels),
                "messages/s": self.per_second}

    def __repr__(self) -> str:
        return f"{len(self.labels)} messages in {self.seconds:.2f} s ({self.per_second:.1f}/s)"


def predict(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 128) -> Predictions:
    """The classifier's intent for each message: one forward pass per batch, the highest logit wins.

    Taught in notebook 06.
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of messages")
    labels, was_training = [], model.training
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for begin in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[begin:begin + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(model.device)
            labels += [INTENTS[i] for i in model(**batch).logits.argmax(-1).tolist()]
    seconds = time.perf_counter() - start
    model.train(was_training)
    return Predictions(labels, seconds)


def few_shots(split, per_intent: int = 1, seed: int = 0) -> list[tuple[str, str]]:
    """(message, intent) examples for a few-shot prompt: `per_intent` of each intent, in a shuffled order.

    Take them from the training split, never from the messages you score. Taught in notebook 06.
    """
    shuffled = split.shuffle(seed=seed)
    taken: dict[str, int] = {}
    shots = []
    for text, intent in zip(shuffled["text"], shuffled["intent"], strict=True):
        if taken.get(intent, 0) < per_intent:
            taken[intent] = taken.get(intent, 0) + 1
            shots.append((text, intent))
    return shots


def label_prompt(text: str, lang: str = "en", shots: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Chat messages that ask a chat model for the intent of `text`: the intents with one-line descriptions
    in the system message, then `shots` (message, intent) as example turns. Taught in notebook 06.
    """
    if lang not in DESCRIPTIONS:
        raise ValueError(f"lang must be one of {sorted(DESCRIPTIONS)}, not {lang!r}")
    listing = "\n".join(f"- {intent}: {about}" for intent, about in DESCRIPTIONS[lang].items())
    messages = [{"role": "system", "content": INSTRUCTION[lang].format(labels=listing)}]
    for shot, intent in shots:
        messages += [{"role": "user", "content": shot}, {"role": "assistant", "content": intent}]
    return [*messages, {"role": "user", "content": text}]


def _norm(text: str) -> str:
    """NFKC (full-width to ASCII), case folded, runs of spaces, hyphens and underscores made one space."""
    return re.sub(r"[\s_\-]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _aliases() -> dict[str, str]:
    """The spellings that name an intent (normalised): its id, and its Japanese name(s) from DESCRIPTIONS["ja"]."""
    found = {_norm(intent): intent for intent in INTENTS}
    for intent, about in DESCRIPTIONS["ja"].items():
        found |= {_norm(name): intent for name in about.split("：")[0].split("・")}
    return found


ALIASES = _aliases()
# ASCII names must stand alone ("pricing", not "repricing"); Japanese has no spaces, so its names need not.
_MENTION = re.compile("|".join(
    rf"(?<![a-z0-9]){re.escape(a)}(?=s?(?![a-z0-9]))" if a.isascii() else re.escape(a)
    for a in sorted(ALIASES, key=len, reverse=True)))


def parse_label(answer: str) -> str:
    """The intent a chat model's reply names, or "unknown" (counted as an error): the first intent mentioned wins.

    Accepts the id in any case, full-width, with spaces or hyphens ("Returns-Refunds", "ｐｒｉｃｉｎｇ"),
    quoted or in a sentence ("The intent is: shipping."), and the Japanese names of DESCRIPTIONS["ja"]
    ("配送です"). An id inside a longer word does not count. Taught in notebook 06.
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, not {type(answer).__name__}")
    found = _MENTION.search(_norm(answer))
    return ALIASES[found.group()] if found else UNKNOWN


def ask_labels(model, tokenizer, texts: list[str], lang: str = "en", shots: Sequence[tuple[str, str]] = (),
               max_new_tokens: int = 8, batch_size: int = 8) -> Predictions:
    """The generative baseline: ask the chat model for each message's intent (greedy) and parse its reply.

    Taught in notebook 06.
    """
    from ftlib import generate

    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty list of messages")
    prompts = [label_prompt(text, lang, shots) for text in texts]
    out = generate.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return Predictions([parse_label(answer) for answer in out.texts], out.seconds, out.texts)
