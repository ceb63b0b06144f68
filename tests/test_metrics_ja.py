"""Fact matching on Japanese (and English) text: notation variants hit, paraphrases of minimal facts hit,
near misses (another number, a longer number) do not; the shipped facts are minimal and found in their answers."""

import re

import pytest

from ftlib import data, metrics
from ftlib.env import ROOT

HIT, MISS = 1, 0

PAIRS = [  # (answer, fact, expected)
    # one notation written two ways
    ("配送は5～8営業日です", "5〜8営業日", HIT),  # full-width tilde U+FF5E, wave dash U+301C
    ("配送は5~8営業日です", "5〜8営業日", HIT),  # ASCII tilde
    ("配送は5\u02dc8営業日です", "5〜8営業日", HIT),  # small tilde, which NFKC alone turns into a space
    ("配送は5\u223c8営業日です", "5～8営業日", HIT),  # tilde operator
    ("配送は5 〜 8 営業日です", "5〜8営業日", HIT),
    ("最大128 GBのmicroSDカード", "128GB", HIT),
    ("microSD cards up to 128GB", "128 GB", HIT),
    ("ＴＳＵＢＡＭＥ\u3000ＣＡＭをお使いください", "Tsubame Cam", HIT),  # full-width letters and space
    ("保証は１８か月です", "18か月", HIT),
    ("保証は18ヶ月です", "18か月", HIT),
    ("保証は18カ月です", "18か月", HIT),
    ("an 18 months warranty", "18-month", HIT),
    ("受付は９時～１８時です", "9時〜18時", HIT),
    ("weekdays 9:00-18:00 JST", "9:00–18:00 JST", HIT),  # hyphen for the en dash
    ("価格は8800円です", "8,800円", HIT),
    ("価格は¥8,800です", "8,800円", HIT),
    ("It is 8,800 yen.", "¥8,800", HIT),
    ("ｶﾒﾗを近づけてください", "カメラ", HIT),  # half-width katakana
    ("①2.4GHz帯のWi-Fiを選んでください", "2.4GHz", HIT),  # circled 1 is not part of the number
    # a correct paraphrase of a minimal fact
    ("他社の音声アシスタントには対応していません", "対応", HIT),
    ("途中解約による返金はできません", "返金", HIT),
    ("学割とクーポンは併用できません", "併用", HIT),
    ("送料は無料です", "無料", HIT),
    ("お届けから30日以内であれば返品できます", "30日", HIT),
    ("録画を30日間保存します", "30日", HIT),
    ("「アカウント」＞「セキュリティ」から変更できます", "セキュリティ", HIT),
    ("Tsubameの製品についてお手伝いできます", "ツバメテック", HIT),  # the brand's two spellings
    ("ツバメテックのサポート窓口です", "Tsubame", HIT),
    ("I can help with ツバメテック products.", "Tsubame Tech", HIT),
    # near misses: another or a longer number, another string
    ("配送は5〜7営業日です", "5〜8営業日", MISS),
    ("価格は¥8,000です", "¥8,800", MISS),
    ("価格は18,800円です", "8,800円", MISS),
    ("価格は8,000円です", "8,800円", MISS),
    ("US$99 shipping", "US$9", MISS),
    ("12営業日以内に発送します", "2営業日", MISS),
    ("130日以内", "30日", MISS),
    ("保証は18か月です", "8か月", MISS),
    ("15回連続で間違えると", "5回", MISS),
    ("12.4GHz", "2.4GHz", MISS),
    ("注文番号TT-2024-001234", "TT-2024-00123", MISS),
    ("0120-000-001までお電話ください", "0120-000-000", MISS),
    ("ツバメが巣を作りました", "ツバメテック", MISS),  # the bird is not the brand
    ("1,280GBまで", "128GB", MISS),
]


@pytest.mark.parametrize(("answer", "fact", "expected"), PAIRS)
def test_tricky_pairs(answer, fact, expected):
    assert metrics.fact_hits(answer, [fact]) == expected


def test_the_issue_examples():
    assert metrics.fact_hit_rate(["配送は5～8営業日です"], [["5〜8営業日"]]) == 1.0
    assert metrics.fact_hit_rate(["128 GB", "128GB"], [["128GB"], ["128 GB"]]) == 1.0


def test_fact_hits_counts_each_fact():
    assert metrics.fact_hits("Tsubame Camは8,800円、保証は18ヶ月です", ["8,800円", "18か月", "5,500円"]) == 2


@pytest.fixture(scope="module")
def qa():
    return data.load_records(ROOT / "data" / "support_qa.jsonl", data.QA)


PARAPHRASED = [  # (id, lang, a correct answer worded unlike the shipped one): it states every fact of the row
    ("q0162", "ja", "Alexaなど他社の音声アシスタントには対応していません。操作はTsubame Homeアプリでどうぞ。"),
    ("q0177", "ja", "年額プランを途中で解約しても返金はできません。"),
    ("q0258", "ja", "学割とクーポンコードは併用できません。"),
    ("q0027", "ja", "削除済みのアカウントを復元することはできません。"),
    ("q0123", "ja", "無料期間中の解約なら料金はかかりません。"),
    ("q0004", "ja", "メールへの返信は1営業日ほどかかります。"),
    ("q0050", "ja", "アプリのチャットは平日の9時～18時に対応しています。"),
    ("q0293", "ja", "リセットボタンを10秒押し続け、ランプが青の点滅になれば完了です。"),
    ("q0330", "ja", "はい、解約するまで自動更新されます。"),
    ("q0160", "ja", "学割は学生のみ対象です。10台以上なら sales@tsubame.example へどうぞ。"),
    ("q0141", "ja", "初月無料はお一人様1回限りです。"),
    ("q0030", "ja", "Tsubame Motion Sensorは屋内用です。"),
    ("q0027", "en", "Deleted accounts cannot be restored, sorry."),
    ("q0258", "en", "You can't combine the student discount with a coupon."),
    ("q0293", "en", "Press reset for 10 seconds; the light flashes blue when it is ready."),
    ("q0030", "en", "It is only for indoor use."),
    ("q0035", "en", "Cam Mini keeps clips in the cloud; Tsubame Cam takes a 128GB card."),
]


@pytest.mark.parametrize(("qid", "lang", "answer"), PARAPHRASED)
def test_a_paraphrase_states_every_fact(qa, qid, lang, answer):
    facts = qa.set_index("id").loc[qid, f"facts_{lang}"]
    assert metrics.fact_hits(answer, facts) == len(facts), facts


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_shipped_fact_is_found_in_its_answer(qa, lang):
    answers, facts = qa[f"answer_{lang}"].tolist(), qa[f"facts_{lang}"].map(list).tolist()
    assert metrics.fact_hit_rate(answers, facts) == 1.0


INFLECTED = {
    "ja": re.compile(r"ません|ございます|おります|[しれ]ます|[でな]く$|した後|以内$|以上$|[日分月年]間$|専用$|「"),
    "en": re.compile(r"n't\b|\bnot\b|\bno\b|\bonly\b"),
}


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_shipped_facts_are_minimal_strings(qa, lang):
    inflected = [(row.id, fact) for row in qa.itertuples() for fact in getattr(row, f"facts_{lang}")
                 if INFLECTED[lang].search(fact)]
    assert not inflected
