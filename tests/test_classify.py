"""ftlib.classify: intent data, the classifier (head + LoRA, Trainer), prediction, the generative baseline."""

import pytest
import torch

from ftlib import classify, data


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
        assert set(intents[split].column_names) == {"intent", "text", "label"}
        assert len(intents[split]) == len(course[split])
    row, source = intents["test"][0], course["test"][0]
    assert row["text"] == source["prompt"][-1]["content"] and row["intent"] == source["intent"]
    assert all(classify.INTENTS[label] == intent for label, intent in zip(intents["train"]["label"],
                                                                            intents["train"]["intent"], strict=True))


def test_japanese_intent_dataset_is_japanese():
    text = classify.intent_dataset("ja")["train"]["text"][0]
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)


def test_keep_few_keeps_k_rows_of_the_chosen_intents_only(intents):
    rare = ("warranty", "shipping")
    small = classify.keep_few(intents["train"], rare, keep=3)
    counts = {i: small["intent"].count(i) for i in classify.INTENTS}
    assert counts["warranty"] == counts["shipping"] == 3
    assert all(counts[i] == intents["train"]["intent"].count(i) for i in classify.INTENTS if i not in rare)
    with pytest.raises(ValueError, match="unknown intents"):
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
    run = classify.train_classifier(model, tok, small, tmp_path, max_steps=3, batch=4, eval_steps=3,
                                    weights=weights, live=False)
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


@pytest.mark.slow
def test_training_lifts_test_accuracy_far_above_the_untrained_head():
    ds = classify.intent_dataset("en")
    model, tok = classify.load_classifier("smollm2-135m", r=16, layers=10)
    true = ds["test"]["intent"]
    before = classify.predict(model, tok, ds["test"]["text"]).scores(true)["accuracy"]
    classify.train_classifier(model, tok, ds, max_steps=24, lr=3e-3, batch=16, eval_steps=24, live=False)
    after = classify.predict(model, tok, ds["test"]["text"]).scores(true)["accuracy"]
    # 12 intents: chance is 0.08; 18 of 44 right by guessing has a probability below 1e-7
    assert before < 0.25 and after >= 0.45 and after - before >= 0.3, (before, after)


def test_few_shots_take_one_message_of_each_intent_from_the_split(intents):
    shots = classify.few_shots(intents["train"], per_intent=1, seed=0)
    assert sorted(intent for _, intent in shots) == sorted(classify.INTENTS)
    assert all(text in intents["train"]["text"] for text, _ in shots)
    assert classify.few_shots(intents["train"], seed=0) == shots  # repeatable
    assert len(classify.few_shots(intents["train"], per_intent=2)) == 2 * len(classify.INTENTS)


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
