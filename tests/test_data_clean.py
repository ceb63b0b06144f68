"""Cleaning, PII masking, splitting and formatting on small hand-made inputs."""

import pandas as pd
import pytest

from ftlib import data

PII = [
    ("Please mail me at taro.yamada@example.com", "<EMAIL>", "email"),
    ("連絡先は hanako_99@mail.example.jp です", "<EMAIL>", "email"),
    ("携帯は090-1234-5678です", "<PHONE>", "phone"),
    ("自宅 03-1234-5678 までお願いします", "<PHONE>", "phone"),
    ("番号は09012345678です", "<PHONE>", "phone"),
    ("Call me on +81 90 1234 5678 please", "<PHONE>", "phone"),
    ("My US number is +1 (415) 555-0100.", "<PHONE>", "phone"),
    ("Card 4111 1111 1111 1111 was charged twice", "<CARD>", "card"),
    ("カード番号4111-1111-1111-1111で払いました", "<CARD>", "card"),
]
NOT_PII = [
    "The Tsubame Cam costs ¥8,800 (US$59).",
    "Tsubame Camは8,800円（税込）です。",
    "Your order TT-2024-00123 shipped on 2024-05-01.",
    "We are open 9:00–18:00 JST, 平日9時〜18時.",
    "Call support on 0120-000-000 or write to support@tsubame.example.",
    "Reset: hold the button for 10 seconds; up to 32 sensors; 1,500 W max.",
]


@pytest.mark.parametrize("text, placeholder, kind", PII)
def test_pii_is_masked_in_both_languages(text, placeholder, kind):
    masked, found = data.mask_pii(text)
    assert placeholder in masked and found[kind] == 1
    assert not any(ch.isdigit() for ch in masked.replace("<PHONE>", "").split(placeholder)[0][-3:])


@pytest.mark.parametrize("text", NOT_PII)
def test_prices_dates_order_numbers_and_company_contacts_stay(text):
    masked, found = data.mask_pii(text)
    assert masked == text and not found


def test_width_is_made_consistent_but_japanese_punctuation_stays():
    assert (data.normalize_width("Ｔｓｕｂａｍｅ　Ｃａｍは８，８００円（税込）ですか？")
            == "Tsubame　Camは8,800円（税込）ですか？")
    assert data.normalize_width("ﾂﾊﾞﾒのｶﾒﾗ") == "ツバメのカメラ"
    assert data.normalize_width("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ、はい，") == "taro@example.com、はい，"


def test_whitespace_is_tidied_but_indentation_and_blank_lines_stay():
    assert data.normalize("\u3000 Tsubame  Cam\tは \n 8,800円 ") == "Tsubame Cam は\n 8,800円"
    code = "Use:\n\n```python\nfor x in xs:\n    if x:  \n        print(x)\n```\n\nDone."
    assert data.normalize(code) == code.replace(":  \n", ":\n")
    assert data.normalize("a\r\n\r\n  b  c\t") == "a\n\n  b c"


def test_report_adds_up_and_keeps_removed_rows():
    df = pd.DataFrame({"ticket_id": list("ABCD"), "lang": ["en"] * 4, "intent": ["pricing"] * 3 + ["misc"],
                       "question": ["Price?", "Price?", "Mail me at a@b.example", "x"],
                       "answer": ["¥8,800", "¥8,800", "Sure.", "y"]})
    kept, report = data.clean(df, labels=data.INTENTS, rules=data.RULES)
    assert report.input_rows == 4 == report.kept + len(report.removed)
    assert set(report.removed["ticket_id"]) == {"B", "D"}  # inspectable, with the original text
    assert report.changed["PII: email"] == 1 and "<EMAIL>" in kept["question"].tolist()[1]
    summary = report.summary()
    assert summary.loc["kept", "rows"] == 2 and summary.loc["input rows", "rows"] == 4
    assert "4 input rows = 2 kept + 2 removed" in report._repr_html_()


def synthetic(n_per_intent=20, intents=("pricing", "warranty", "shipping", "out_of_scope")):
    rows = []
    for intent in intents:
        for i in range(n_per_intent):
            for lang in ("en", "ja"):
                rows.append({"pair_id": f"{intent}-{i}", "lang": lang, "intent": intent,
                             "question": f"{intent} question number {i} in {lang}", "answer": f"answer {i}"})
    return pd.DataFrame(rows)


def test_split_is_stratified_deterministic_and_leak_free():
    df = synthetic()
    df = pd.concat([df, df.iloc[[0]].assign(question="PRICING question number 0, in en!")], ignore_index=True)
    a = data.split(df, "intent", val=0.1, test=0.2, seed=1, group_by="pair_id")
    b = data.split(df, "intent", val=0.1, test=0.2, seed=1, group_by="pair_id")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert sum(len(s) for s in a.values()) == len(df)
    keys = {name: set(s["question"].map(data.dedup_key)) for name, s in a.items()}
    pairs = {name: set(s["pair_id"]) for name, s in a.items()}
    for x, y in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not keys[x] & keys[y] and not pairs[x] & pairs[y]
    shares = a["test"]["intent"].value_counts(normalize=True)
    assert shares.between(0.15, 0.35).all() and len(shares) == 4  # every intent, in proportion
    c = data.split(df, "intent", val=0.1, test=0.2, seed=2, group_by="pair_id")
    assert set(c["test"]["pair_id"]) != set(a["test"]["pair_id"])


def test_to_dataset_formats_prompt_completion_and_messages():
    splits = data.split(synthetic(), "intent", group_by="pair_id")
    ds = data.to_dataset(splits, lang="ja", system=data.SYSTEM_PROMPT["ja"])
    row = ds["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["completion"][0]["role"] == "assistant"
    assert row["prompt"][0]["content"] == data.SYSTEM_PROMPT["ja"] and "in ja" in row["prompt"][1]["content"]
    assert sum(len(d) for d in ds.values()) == len(synthetic()) // 2
    msgs = data.to_dataset(splits, lang="en", style="messages", system="Be brief.")["test"][0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"] and msgs[0]["content"] == "Be brief."
    plain = data.to_dataset(splits, lang="en")["train"][0]  # no system message unless one is passed
    assert [m["role"] for m in plain["prompt"]] == ["user"] and set(plain) == {"prompt", "completion", "intent"}


def test_label_preview_masks_the_prompt_and_trains_eos(tiny):
    model, tok = tiny
    splits = data.split(synthetic(), "intent", group_by="pair_id")
    example = data.to_dataset(splits, system=data.SYSTEM_PROMPT["en"])["train"][0]
    preview = data.label_preview(example, model, tok)
    text = "".join(preview.tokens)
    trained = "".join(t for t, keep in zip(preview.tokens, preview.trained, strict=True) if keep)
    assert example["completion"][0]["content"] in trained
    assert example["prompt"][1]["content"] in text and example["prompt"][1]["content"] not in trained
    assert data.SYSTEM_PROMPT["en"][:20] not in trained
    assert tok.eos_token in trained and preview.trained[-1]  # the answer's end is trained
    assert "#d4f7d4" in preview._repr_html_()


def test_token_stats(tiny):
    _, tok = tiny
    ds = data.to_dataset(data.split(synthetic(), "intent", group_by="pair_id"))["train"]
    stats = data.token_stats(ds, tok, max_length=64).iloc[0]
    assert stats["rows"] == len(ds) and stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert stats["max_length for p99"] % 32 == 0 and stats["max_length for p99"] >= stats["p99"]


def test_quality_report_counts_and_shows():
    df = synthetic(n_per_intent=10)
    df = pd.concat([df, df[df.intent == "pricing"]], ignore_index=True)  # pricing twice as large
    report = data.quality_report(df)
    assert report.counts.loc["pricing", "total"] == 40 and report.counts.loc["total", "total"] == len(df)
    assert report.imbalance == 2.0 and report.languages.to_dict() == {"en": 0.5, "ja": 0.5}
    page = report._repr_html_()
    assert page.count("<img src='data:image/png;base64,") == 2 and "largest/smallest intent 2.00" in page
