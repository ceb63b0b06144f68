"""Cleaning, PII masking, splitting and formatting on small hand-made inputs."""

import pandas as pd
import pytest

from ftlib import data

PII = [  # (text, masked text): every major format, and numbers that only look like personal data
    ("Please mail me at taro.yamada@example.com", "Please mail me at <EMAIL>"),
    ("連絡先は hanako_99@mail.example.jp です", "連絡先は <EMAIL> です"),
    ("携帯は090-1234-5678です", "携帯は<PHONE>です"),
    ("自宅 03-1234-5678 までお願いします", "自宅 <PHONE> までお願いします"),
    ("番号は09012345678です", "番号は<PHONE>です"),
    ("携帯は090 1234 5678です", "携帯は<PHONE>です"),
    ("自宅は0312345678です", "自宅は<PHONE>です"),
    ("電話：090ー1234ー5678", "電話：<PHONE>"),  # long-vowel mark as a dash
    ("090‐1234‐5678 / 03–1234–5678 / 06−6123−4567 / 045―123―4567", "<PHONE> / <PHONE> / <PHONE> / <PHONE>"),
    ("０９０－１２３４－５６７８に", "<PHONE>に"),  # full-width
    ("(03) 1234-5678 か 0120-123-456", "<PHONE> か <PHONE>"),
    ("Call me on +81 90 1234 5678 please", "Call me on <PHONE> please"),
    ("My US number is +1 (415) 555-0100.", "My US number is <PHONE>."),
    ("London: +44 20 7946 0958", "London: <PHONE>"),
    ("Call (415) 555-0132 today", "Call <PHONE> today"),  # North American, no +1
    ("Call 415-555-0132 or 415.555.0133 or 1-415-555-0134", "Call <PHONE> or <PHONE> or <PHONE>"),
    ("Card 4111 1111 1111 1111 was charged twice", "Card <CARD> was charged twice"),
    ("カード番号4111-1111-1111-1111で払いました", "カード番号<CARD>で払いました"),
    ("card 4111.1111.1111.1111", "card <CARD>"),  # dots
    ("Amex 3782 822463 10005 and 378282246310005", "Amex <CARD> and <CARD>"),  # 15 digits, 4-6-5
    ("Diners 3056 930902 5904", "Diners <CARD>"),  # 14 digits
    ("Visa 4222222222222 (13 digits)", "Visa <CARD> (13 digits)"),
    ("JCB 3530111333300000, Mastercard 5555-5555-5555-4444", "JCB <CARD>, Mastercard <CARD>"),
    ("19 digits: 6011 1111 1111 1111 110", "19 digits: <CARD>"),
    ("マイナンバーは123456789018です", "マイナンバーは<MY_NUMBER>です"),
    ("My Number 1234 5678 9018, please", "My Number <MY_NUMBER>, please"),
    # must not be masked
    ("The Tsubame Cam costs ¥8,800 (US$59).", None),
    ("Tsubame Camは8,800円（税込）です。", None),
    ("Your order TT-2024-00123 shipped on 2024-05-01.", None),
    ("We are open 9:00–18:00 JST, 平日9時〜18時.", None),
    ("Call support on 0120-000-000 or write to support@tsubame.example.", None),
    ("Reset: hold the button for 10 seconds; up to 32 sensors; 1,500 W max.", None),
    ("Tracking 1234567890123456 and 9400110200881234", None),  # 16 digits failing Luhn
    ("Tracking 4111 1111 1111 1112", None),  # grouped like a card, fails Luhn, and no 12-digit piece of it is taken
    ("Ticket 123456789012", None),  # 12 digits without a valid My Number check digit
    ("ISBN 978-4-12-345678-9, 〒100-0001, 01.02.2024", None),
    ("Barcode 9784123456789", None),  # 13 digits, but no card network starts with 9
    ("Reference 123-456-7890, range 2019-2024, 555-0100", None),  # no North American area code starts with 1
    ("pi is 3.14159265358979", None),
]


@pytest.mark.parametrize("text, masked", PII, ids=[t[:30] for t, _ in PII])
def test_pii_is_masked_in_every_format_and_lookalikes_stay(text, masked):
    result, found = data.mask_pii(text)
    assert result == (masked or text)
    assert sum(found.values()) == (masked or "").count("<")


def test_card_and_my_number_checksums():
    assert data.luhn("4111 1111 1111 1111") and not data.luhn("4111 1111 1111 1112")
    assert data.my_number_ok("123456789018") and not data.my_number_ok("123456789012")
    assert not data.my_number_ok("12345678901")  # 11 digits


def test_redact_hides_the_value_but_shows_the_shape():
    assert data.redact("携帯は090-1234-5678、mail taro@example.com") == "携帯は•••-••••-••••、mail ••••@•••••••.•••"
    assert data.redact("support@tsubame.example") == "support@tsubame.example"  # the company's own contact


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


def test_report_shows_personal_data_redacted_when_pii_is_masked():
    df = pd.DataFrame({"question": ["Call 090-1234-5678 <b>now</b>", "Call 090-1234-5678 <b>now</b>"],
                       "answer": ["Sure.", "Sure."]})
    kept, report = data.clean(df, rules=data.RULES)
    assert kept["question"][0] == "Call <PHONE> now"
    assert report.examples["html"] == ("Call •••-••••-•••• <b>now</b>", "Call •••-••••-•••• now")
    assert report.removed["question"].tolist() == ["Call •••-••••-•••• <b>now</b>"]  # the duplicate, redacted
    _, plain = data.clean(df, rules=("html",))  # masking not asked for: the report shows the text as it is
    assert plain.examples["html"][0] == df["question"][0]


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
