#!/usr/bin/env python3
"""Build the *raw* support-system export from the clean dataset.

    python data/make_raw.py

Reads  data/support_qa.jsonl  (the canonical, clean question-answer pairs) and writes

    data/raw/support_export.csv     one row per language per pair, with planted defects
    data/raw/planted_defects.json   how many defects of each kind were planted, and where

The script uses the standard library only and a fixed seed, so running it twice gives
byte-identical files. The defects are the ones a data-cleaning lesson should find:
exact and near duplicates, HTML in answers, personal data (e-mail addresses, phone
numbers, card numbers) inside questions, empty answers, full-width/half-width mixing,
stray whitespace, over-long rows, one malformed CSV line and labels outside the
12-intent set. Each planted row is listed with its kind(s) and its 1-based line number
in the CSV file (line 1 is the header), so a test can check a cleaner row by row.

Counting rule used in planted_defects.json: the count of a kind is the number of CSV
data lines whose "defects" list contains that kind. Kinds never overlap on a line,
except that two Japanese near duplicates are written in full-width letters/digits and
are therefore listed as both "near_duplicates" and "width_mixed".
"""

import csv
import io
import json
import random
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20240601
HERE = Path(__file__).resolve().parent
SRC = HERE / "support_qa.jsonl"
OUT_DIR = HERE / "raw"
CSV_PATH = OUT_DIR / "support_export.csv"
JSON_PATH = OUT_DIR / "planted_defects.json"

COLUMNS = ["ticket_id", "created_at", "lang", "intent", "question", "answer"]
INTENTS = ["product_info", "pricing", "shipping", "returns_refunds", "warranty", "order_status",
           "account_login", "billing_payment", "setup_troubleshooting", "subscription",
           "contact_hours", "out_of_scope"]

# ----------------------------------------------------------------------------------
# Planted material (all fake: reserved example domains, fictional/test numbers)
# ----------------------------------------------------------------------------------
EMAILS = [  # (lang, sentence added to the question, the e-mail address)
    ("en", "My e-mail is taro.yamada@example.com if you need it.", "taro.yamada@example.com"),
    ("en", "Please reply to j.smith1987@example.net.", "j.smith1987@example.net"),
    ("en", "(account: mika_w+tsubame@example.org)", "mika_w+tsubame@example.org"),
    ("ja", "連絡先はhanako.suzuki@example.jpです。", "hanako.suzuki@example.jp"),
    ("ja", "返信はken-ito@example.co.jpにお願いします。", "ken-ito@example.co.jp"),
    ("ja", "登録アドレス：sato.yuki@example.ne.jp", "sato.yuki@example.ne.jp"),
]
PHONES_JA = [
    ("ja", "折り返しは090-1234-5678までお願いします。", "090-1234-5678"),
    ("ja", "自宅の電話は03-1234-5678です。", "03-1234-5678"),
    ("ja", "会社のフリーダイヤル0120-123-456にご連絡ください。", "0120-123-456"),
    ("ja", "携帯（080-9876-5432）に電話ください。", "080-9876-5432"),
    ("en", "You can call me on 090-2468-1357.", "090-2468-1357"),
    ("en", "Office number: 06-6123-4567.", "06-6123-4567"),
]
PHONES_INTL = [
    ("en", "Call me at +1 (415) 555-0100 please.", "+1 (415) 555-0100"),
    ("en", "My number is +81 90 1234 5678.", "+81 90 1234 5678"),
    ("ja", "海外からです。電話番号は+1 212 555 0142です。", "+1 212 555 0142"),
    ("ja", "連絡は+81-3-1234-5678までお願いします。", "+81-3-1234-5678"),
]
CARDS = [
    ("en", "I paid with card 4111 1111 1111 1111, can you check it?", "4111 1111 1111 1111"),
    ("en", "card no. 5555-5555-5555-4444 was charged", "5555-5555-5555-4444"),
    ("ja", "カード番号は4242424242424242です。", "4242424242424242"),
    ("ja", "使ったカードは3530 1113 3330 0000です。", "3530 1113 3330 0000"),
]
BAD_LABELS = ["refund", "misc", "other", "billing", "setup"]

# Benign numbers (NOT defects): order numbers and dates a PII masker must leave alone.
BENIGN_INTENTS = {"order_status", "returns_refunds", "shipping", "warranty", "billing_payment"}


def order_no(rng):
    return f"TT-2024-{rng.randint(100, 2999):05d}"


def benign_en(rng, created):
    d = created - timedelta(days=rng.randint(1, 20))
    return rng.choice([
        lambda: f"Order {order_no(rng)}: ",
        lambda: f"I ordered on {d:%Y-%m-%d}. ",
        lambda: f"Re: order {order_no(rng)} (placed {d:%B} {d.day}). ",
        lambda: f"Order number {order_no(rng)}. ",
    ])()


def benign_ja(rng, created):
    d = created - timedelta(days=rng.randint(1, 20))
    return rng.choice([
        lambda: f"（注文番号：{order_no(rng)}）",
        lambda: f"{d.year}年{d.month}月{d.day}日に注文しました。",
        lambda: f"注文番号{order_no(rng)}の件です。",
        lambda: f"{d:%Y/%m/%d}に購入した者です。",
    ])()


# ----------------------------------------------------------------------------------
# Text helpers
# ----------------------------------------------------------------------------------
def to_fullwidth_alnum(s):
    """ASCII letters and digits (and ',' inside numbers) -> full-width forms."""
    out = []
    for i, ch in enumerate(s):
        if ch.isascii() and ch.isalnum():
            out.append(chr(ord(ch) + 0xFEE0))
        elif ch == "," and 0 < i < len(s) - 1 and s[i - 1].isdigit() and s[i + 1].isdigit():
            out.append("，")
        else:
            out.append(ch)
    return "".join(out)


HALFWIDTH_KATA = {"カメラ": "ｶﾒﾗ", "アプリ": "ｱﾌﾟﾘ", "プラグ": "ﾌﾟﾗｸﾞ", "センサー": "ｾﾝｻｰ"}


def pasted_log(lang, rng, min_len=2100):
    """A long single-line device log (no PII, no HTML, single spaces only)."""
    events = ["wifi: scanning networks", "wifi: connect failed band=5GHz", "wifi: retry 2.4GHz",
              "ble: provisioning started", "ble: provisioning timeout", "fw: check update v2.3.1",
              "cam: stream start 1080p", "cam: stream stop", "ir: night mode on", "sd: mount ok 64GB",
              "cloud: upload clip ok", "cloud: upload clip retry", "hub: sensor heartbeat ok",
              "led: blinking red", "led: solid blue"]
    head = "Log from the app: " if lang == "en" else "アプリのログを貼ります："
    parts = []
    t = datetime(2024, 3, 4, 21, 0, 0)
    while len(head) + len(" ".join(parts)) < min_len:
        t += timedelta(seconds=rng.randint(1, 40))
        lvl = rng.choice(["INFO", "INFO", "WARN", "ERROR"])
        parts.append(f"{t:%Y-%m-%d %H:%M:%S} [{lvl}] {rng.choice(events)};")
    return head + " ".join(parts)


def add_html(ans, lang, variant):
    sents = re.split(r"(?<=[.!?。！？])\s*", ans.strip())
    sents = [s for s in sents if s]
    if variant == 0 and len(sents) > 1:
        return "<br>".join(sents)
    if variant == 1:
        return "<p>" + ans + "</p>"
    if variant == 2:
        m = re.search(r"(¥[\d,]+|[\d,]+円|\d+ (?:days|months|business days|seconds)|\d+日|\d+か月)", ans)
        if m:
            return ans[:m.start()] + "<b>" + m.group(0) + "</b>" + ans[m.end():]
        return "<b>" + ans + "</b>"
    if variant == 3:
        if lang == "en" and " and " in ans:
            return ans.replace(" and ", " &amp; ", 1)
        return ans + "&nbsp;"
    return "<p>" + "</p><p>".join(sents) + "</p>"


def main():
    rng = random.Random(SEED)
    pairs = [json.loads(line) for line in SRC.read_text(encoding="utf-8").splitlines() if line.strip()]

    # 1. base rows: one per language per pair
    base = []
    start = datetime(2024, 1, 4, 9, 0, 0)
    for p in pairs:
        for lang in ("en", "ja"):
            base.append({
                "src": f"{p['id']}:{lang}", "lang": lang, "intent": p["intent"],
                "question": p[f"question_{lang}"], "answer": p[f"answer_{lang}"],
                "defects": [], "detail": {},
                "created": start + timedelta(minutes=rng.randint(0, 360 * 24 * 60)),
            })

    # 2. pick disjoint sets of base rows for each in-place defect
    order = list(range(len(base)))
    rng.shuffle(order)
    taken = set()

    def pick(n, cond=lambda r: True):
        got = []
        for i in order:
            if i not in taken and cond(base[i]):
                got.append(i)
                taken.add(i)
                if len(got) == n:
                    break
        assert len(got) == n
        return got

    en = lambda r: r["lang"] == "en"
    ja = lambda r: r["lang"] == "ja"
    has_alnum = lambda r: (r["lang"] == "ja" and re.search(r"[A-Za-z0-9]{3,}", r["question"])
                           and "@" not in r["question"] + r["answer"])
    has_kata = lambda r: r["lang"] == "ja" and any(k in r["question"] for k in HALFWIDTH_KATA)

    # html (8)
    for v, i in enumerate(pick(4, en) + pick(4, ja)):
        r = base[i]
        r["answer"] = add_html(r["answer"], r["lang"], v % 5)
        r["defects"].append("html")
        r["detail"] = {"field": "answer"}
    # PII in questions
    for kind, items in (("emails", EMAILS), ("phones_ja", PHONES_JA),
                        ("phones_intl", PHONES_INTL), ("cards", CARDS)):
        for lang, sent, value in items:
            (i,) = pick(1, en if lang == "en" else ja)
            r = base[i]
            q = r["question"]
            if lang == "ja" and q[-1] not in "。？！?!）":
                q += "。"
            r["question"] = q
            sep = " " if lang == "en" else ""
            r["question"] = (r["question"] + sep + sent) if rng.random() < 0.6 else (sent + sep + r["question"])
            r["defects"].append(kind)
            r["detail"] = {"field": "question", "value": value}
    # empty answers (6)
    for j, i in enumerate(pick(3, en) + pick(3, ja)):
        base[i]["answer"] = ["", "", "", "   ", "\t", "\u3000"][j]
        base[i]["defects"].append("empty_answers")
        base[i]["detail"] = {"field": "answer"}
    # width mixing (8): 5 JA rows with full-width alnum, 1 JA row with half-width katakana,
    # 2 EN rows with full-width alnum in the question
    for i in pick(5, has_alnum):
        r = base[i]
        field = "question" if rng.random() < 0.6 else "answer"
        if not re.search(r"[A-Za-z0-9]", r[field]):
            field = "question"
        r[field] = to_fullwidth_alnum(r[field])
        r["defects"].append("width_mixed")
        r["detail"] = {"field": field}
    for i in pick(1, has_kata):
        r = base[i]
        for k, v in HALFWIDTH_KATA.items():
            r["question"] = r["question"].replace(k, v)
        r["defects"].append("width_mixed")
        r["detail"] = {"field": "question"}
    for i in pick(2, lambda r: en(r) and re.search(r"\b(Cam|Hub|Plug|\d+)\b", r["question"])):
        r = base[i]
        r["question"] = re.sub(r"\b(Cam|Hub|Plug|\d+)\b", lambda m: to_fullwidth_alnum(m.group(0)),
                               r["question"], count=1)
        r["defects"].append("width_mixed")
        r["detail"] = {"field": "question"}
    # stray whitespace (8)
    ws_variants = [
        ("question", lambda s: "  " + s + " "),
        ("answer", lambda s: s.replace(" ", "  ", 1)),
        ("question", lambda s: s + "\t"),
        ("answer", lambda s: "\t" + s),
        ("question", lambda s: s.replace(" ", "   ", 1) if " " in s else s + "  "),
        ("answer", lambda s: s + "  "),
        ("question", lambda s: "\u3000" + s),
        ("answer", lambda s: s.replace("。", "。\u3000", 1)),
    ]
    for (field, fn), i in zip(ws_variants, pick(4, en) + pick(4, ja)):
        r = base[i]
        new = fn(r[field])
        assert new != r[field]
        r[field] = new
        r["defects"].append("stray_whitespace")
        r["detail"] = {"field": field}
    # over-long rows (4): pasted logs in 3 questions and 1 answer
    for j, i in enumerate(pick(2, lambda r: en(r) and r["intent"] == "setup_troubleshooting")
                          + pick(1, lambda r: ja(r) and r["intent"] == "setup_troubleshooting")
                          + pick(1, lambda r: en(r) and r["intent"] == "setup_troubleshooting")):
        r = base[i]
        log = pasted_log(r["lang"], rng)
        if j < 3:
            r["question"] = r["question"] + (" " if r["lang"] == "en" else "") + log
            r["detail"] = {"field": "question"}
        else:
            r["answer"] = r["answer"] + " " + log
            r["detail"] = {"field": "answer"}
        r["defects"].append("over_long")
    # bad labels (5)
    for label, i in zip(BAD_LABELS, pick(5)):
        r = base[i]
        r["detail"] = {"original_intent": r["intent"]}
        r["intent"] = label
        r["defects"].append("bad_labels")
    # benign order numbers / dates in questions (not defects)
    benign = pick(48, lambda r: r["intent"] in BENIGN_INTENTS)
    for i in benign:
        r = base[i]
        if r["lang"] == "en":
            r["question"] = benign_en(rng, r["created"]) + r["question"]
        else:
            r["question"] = benign_ja(rng, r["created"]) + r["question"]
        r["benign"] = True
    # the malformed line (1): a row that the broken exporter wrote without quoting
    (malformed_idx,) = pick(1, lambda r: en(r) and "," in r["answer"] and '"' not in r["answer"]
                            and r["answer"].count(",") >= 2)
    base[malformed_idx]["defects"].append("malformed_line")

    # 3. extra rows: near duplicates (10) and exact duplicates (8) from untouched rows
    extra = []
    en_near = [lambda s: s.lower(), lambda s: s.upper(),
               lambda s: s.rstrip("?.!") if s[-1] in "?.!" else s + "?",
               lambda s: s.rstrip("?.!") + "??" if s[-1] in "?.!" else s + "!!",
               lambda s: s[0].lower() + s[1:].rstrip("?.!") if s[-1] in "?.!" else s.lower() + ".",
               lambda s: s.replace(",", "", 1) if "," in s else s.lower() + "?!"]
    for fn, i in zip(en_near, pick(6, lambda r: en(r) and len(r["question"]) < 120
                                             and r["question"][0].isupper() and r["question"].endswith("?"))):
        src = base[i]
        q = fn(src["question"])
        assert q != src["question"]
        extra.append(dict(src, question=q, defects=["near_duplicates"], detail={"source": i},
                          created=src["created"] + timedelta(minutes=rng.randint(5, 600)), src=src["src"]))
    ja_near = [lambda s: s.rstrip("？?。！") if s[-1] in "？?。！" else s + "？",
               lambda s: s.rstrip("？?。！") + "！" if s[-1] in "？?。！" else s + "！",
               lambda s: s.replace("、", "", 1) if "、" in s else s + "…"]
    for fn, i in zip(ja_near, pick(2, lambda r: ja(r) and not re.search(r"[A-Za-z0-9]", r["question"]))):
        src = base[i]
        q = fn(src["question"])
        assert q != src["question"]
        extra.append(dict(src, question=q, defects=["near_duplicates"], detail={"source": i},
                          created=src["created"] + timedelta(minutes=rng.randint(5, 600)), src=src["src"]))
    for i in pick(2, has_alnum):
        src = base[i]
        q = to_fullwidth_alnum(src["question"])
        extra.append(dict(src, question=q, defects=["near_duplicates", "width_mixed"],
                          detail={"source": i, "field": "question"},
                          created=src["created"] + timedelta(minutes=rng.randint(5, 600)), src=src["src"]))
    exact_sources = pick(8)

    # 4. order by time, assign ticket ids, then insert exact duplicate copies
    rows = base + extra
    for r in rows:
        r.setdefault("benign", False)
    by_time = sorted(range(len(rows)), key=lambda k: (rows[k]["created"], rows[k]["src"]))
    for n, k in enumerate(by_time):
        rows[k]["ticket_id"] = f"TK-{100001 + n}"
        rows[k]["created_at"] = rows[k]["created"].strftime("%Y-%m-%d %H:%M:%S")
    for r in extra:
        r["detail"]["source_ticket_id"] = base[r["detail"].pop("source")]["ticket_id"]
    ordered = [rows[k] for k in by_time]
    for i in exact_sources:
        src = base[i]
        pos = next(k for k, x in enumerate(ordered) if x is src)
        copy = dict(src, defects=["exact_duplicates"], detail={"source_ticket_id": src["ticket_id"]},
                    benign=False)
        ordered.insert(rng.randint(pos + 1, len(ordered)), copy)

    # 5. write the CSV (the malformed row is written by hand, unquoted)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(COLUMNS)
    for r in ordered:
        values = [r["ticket_id"], r["created_at"], r["lang"], r["intent"], r["question"], r["answer"]]
        if "malformed_line" in r["defects"]:
            buf.write(",".join(values) + "\n")
        else:
            w.writerow(values)
    text = buf.getvalue()
    lines = text.split("\n")[:-1]
    assert len(lines) == len(ordered) + 1, "a field contains a newline; line numbers would shift"

    # 6. the defect report
    listing, counts = [], {k: 0 for k in ["exact_duplicates", "near_duplicates", "html", "emails",
                                          "phones_ja", "phones_intl", "cards", "empty_answers",
                                          "width_mixed", "stray_whitespace", "over_long", "bad_labels"]}
    malformed_line = None
    for n, r in enumerate(ordered, start=2):
        if r["defects"]:
            entry = {"ticket_id": r["ticket_id"], "line": n, "lang": r["lang"], "defects": r["defects"]}
            entry.update(r["detail"])
            listing.append(entry)
            for d in r["defects"]:
                if d == "malformed_line":
                    malformed_line = n
                else:
                    counts[d] += 1
    report = {
        "file": "data/raw/support_export.csv",
        "generator": "data/make_raw.py",
        "seed": SEED,
        "columns": COLUMNS,
        "rows_total_data_lines": len(ordered),
        **counts,
        "malformed_line": malformed_line,
        "bad_label_values": BAD_LABELS,
        "counting_rule": ("count of a kind = number of CSV data lines whose 'defects' contain it; "
                          "'line' is the 1-based physical line in the CSV (line 1 = header); "
                          "exact duplicate copies repeat the ticket_id of their source row"),
        "rows": listing,
        "benign_number_rows": [{"ticket_id": r["ticket_id"], "line": n}
                               for n, r in enumerate(ordered, start=2) if r["benign"]],
        "ticket_source": {r["ticket_id"]: r["src"] for r in ordered},
    }

    OUT_DIR.mkdir(exist_ok=True)
    CSV_PATH.write_text(text, encoding="utf-8", newline="")
    JSON_PATH.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {CSV_PATH.relative_to(HERE.parent)} ({len(ordered)} data lines) and "
          f"{JSON_PATH.relative_to(HERE.parent)}")
    print({k: report[k] for k in counts} | {"malformed_line": malformed_line})


if __name__ == "__main__":
    main()
