"""Check yourself: offline checks for the exercises at the end of every notebook (all notebooks).

`check("00.dtype_t4", answer, lang=LANG)` says whether an answer is right; a wrong one gets a hint,
never the solution. `solution(key)` reveals it when the learner asks for it.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The checkers import the ftlib module they check inside themselves, on purpose: every notebook imports check, and
# importing memory at the top (it pulls in transformers and trl) would add about 11 s to `from ftlib import check`
# on a 2-core CPU (measured: 0.0 s now), in notebooks 00 and 01 that never load those libraries otherwise.
Text = dict[str, str]  # {"en": ..., "ja": ...}


@dataclass(frozen=True)
class Exercise:
    """One exercise: its question, a function that accepts right answers, a hint and the solution."""

    key: str
    question: Text
    accepts: Callable[..., bool]
    hint: Text
    solution: Text


EXERCISES: dict[str, Exercise] = {}


def exercise(key: str, question: Text, hint: Text, solution: Text):
    """Register the decorated function as the checker of exercise `key`; exercises of notebook NN are "NN.name".

    Used by check.check (notebook 00).
    """

    def register(accepts: Callable[..., bool]) -> Callable[..., bool]:
        EXERCISES[key] = Exercise(key, question, accepts, hint, solution)
        return accepts

    return register


@dataclass(frozen=True, repr=False)
class Verdict:
    """The result of check(): true when right; shows as a coloured line in Jupyter."""

    key: str
    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __repr__(self) -> str:
        return f"{'✅' if self.correct else '🤔'} {self.key}: {self.message}"

    def _repr_html_(self) -> str:
        colour = "#1b7f3b" if self.correct else "#b35900"
        return f"<div style='color:{colour};font-weight:600'>{html.escape(str(self))}</div>"


def _text(text: Text, lang: str) -> str:
    return text.get(lang, text["en"])


def check(key: str, answer: Any, lang: str = "en", **yours: Any) -> Verdict:
    """Check an exercise answer offline: a confirmation if right, a hint if not.

    yours: what an exercise about your own run computes its answer from (model=, tok=): the model you loaded,
    whichever it is, not the course's default. Taught in notebook 00.
    """
    if key not in EXERCISES:
        raise KeyError(f"no exercise {key!r}; known: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[key]
    try:
        takes = inspect.signature(ex.accepts).parameters  # an exercise not about your run ignores them
        correct = bool(ex.accepts(answer, **{name: value for name, value in yours.items() if name in takes}))
    except Exception:  # a malformed answer is a wrong answer, not a crash
        correct = False
    if correct:
        return Verdict(key, True, {"en": "correct!", "ja": "正解です！"}.get(lang, "correct!"))
    return Verdict(key, False, {"en": "not yet. Hint: ", "ja": "もう一息。ヒント: "}.get(lang, "Hint: ")
                   + _text(ex.hint, lang))


def solution(key: str, lang: str = "en") -> str:
    """The solution of an exercise, for when you have tried. Taught in notebook 00."""
    return _text(EXERCISES[key].solution, lang)


def questions(prefix: str, lang: str = "en") -> str:
    """The questions of one notebook's exercises (keys starting with `prefix`), numbered. Taught in notebook 00."""
    found = [ex for key, ex in EXERCISES.items() if key.startswith(prefix)]
    return "\n".join(f"{i}. [{ex.key}] {_text(ex.question, lang)}" for i, ex in enumerate(found, 1))


def _norm(answer: Any) -> str:
    return str(answer).strip().lower().removeprefix("torch.")


# --- notebook 00 -------------------------------------------------------------------------------

@exercise(
    "00.dtype_t4",
    {"en": "A free Colab T4 has compute capability 7.5. Which dtype should training compute in?",
     "ja": "Colab 無料枠の T4 の compute capability は 7.5 です。学習の計算にはどの dtype を使うべきですか？"},
    {"en": "bf16 needs compute capability 8.0 (Ampere) or newer. Read env.compute_dtype's reasons.",
     "ja": "bf16 は compute capability 8.0（Ampere）以降が必要です。env.compute_dtype の理由を読んでみましょう。"},
    {"en": "float16 (fp16), with the LoRA weights kept in fp32 and loss scaling (fp16=True).",
     "ja": "float16（fp16）。LoRA の重みは fp32 のまま、損失スケーリング（fp16=True）を使います。"},
)
def _dtype_t4(answer: Any) -> bool:
    return _norm(answer) in {"float16", "fp16", "half", "torch.float16"}


@exercise(
    "00.pad_not_eos",
    {"en": "Why must the pad token differ from EOS? (a) padding is faster (b) padded positions are left out of "
           "the loss, so with pad == EOS the model never learns to stop (c) generation cannot run otherwise",
     "ja": "pad トークンを EOS と別にするのはなぜ？ (a) パディングが速くなる (b) パディング位置は損失から除かれるため、"
           "pad == EOS だとモデルが止まり方を学べない (c) そうしないと生成が動かない"},
    {"en": "Think about which label a padded position gets (-100) and which token ends every answer.",
     "ja": "パディング位置のラベル（-100）と、すべての回答の最後に来るトークンを考えてみましょう。"},
    {"en": "(b)", "ja": "(b)"},
)
def _pad_not_eos(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "b"


@exercise(
    "00.left_padding",
    {"en": "You generate answers for 8 prompts of different lengths in one batch. Pad on which side?",
     "ja": "長さの違う 8 個のプロンプトを 1 バッチで生成します。どちら側をパディングしますか？"},
    {"en": "New tokens are appended at the end of each row: what must sit right before them?",
     "ja": "新しいトークンは各行の末尾に追加されます。その直前に来るべきものは？"},
    {"en": "left: each prompt must end right where generation starts (models.padding_side(tok, 'left')).",
     "ja": "左（left）。生成が始まる位置の直前でプロンプトが終わる必要があります"
           "（models.padding_side(tok, 'left')）。"},
)
def _left_padding(answer: Any) -> bool:
    return _norm(answer) in {"left", "左", "左側"}


@exercise(
    "00.weights_mib",
    {"en": "How many MiB would the weights of the model you loaded (`model`) take in fp32? (parameters x 4 bytes "
           "/ 2**20)",
     "ja": "読み込んだモデル（`model`）の重みは、fp32 なら何 MiB になりますか？（パラメータ数 × 4 バイト ÷ 2**20）"},
    {"en": "model.num_parameters() gives the parameter count; each fp32 number is 4 bytes.",
     "ja": "model.num_parameters() でパラメータ数がわかります。fp32 は 1 個 4 バイトです。"},
    {"en": "model.num_parameters() * 4 / 2**20: about 513 MiB for SmolLM2-135M (134.5 M parameters), about "
           "6,500 MiB for SmolLM2-1.7B.",
     "ja": "model.num_parameters() * 4 / 2**20。SmolLM2-135M（1億3450万パラメータ）なら約 513 MiB、"
           "SmolLM2-1.7B なら約 6,500 MiB です。"},
)
def _weights_mib(answer: Any, model=None) -> bool:
    from ftlib import memory

    n = model.num_parameters() if model is not None else memory.estimate("smollm2-135m", "full").params
    return abs(float(answer) - n * 4 / 2**20) <= 0.02 * n * 4 / 2**20


@exercise(
    "00.prompt_tokens",
    {"en": "How many tokens is the prompt of your model's tokenizer (`tok`) for the single user message 'Hello' "
           "after the chat template, with add_generation_prompt=True?",
     "ja": "ユーザーメッセージ 'Hello' 1 つを、読み込んだモデルのトークナイザー（`tok`）のチャットテンプレートに通すと"
           "（add_generation_prompt=True）、何トークンになりますか？"},
    {"en": "tok.apply_chat_template([...], add_generation_prompt=True) returns the ids; count them. Some "
           "templates (SmolLM2's, Qwen's) add a default system prompt.",
     "ja": "tok.apply_chat_template([...], add_generation_prompt=True) の結果の ID を数えます。"
           "既定のシステムプロンプトを足すテンプレートもあります（SmolLM2、Qwen）。"},
    {"en": "len(tok.apply_chat_template([{'role': 'user', 'content': 'Hello'}], add_generation_prompt=True)"
           "['input_ids'])",
     "ja": "len(tok.apply_chat_template([{'role': 'user', 'content': 'Hello'}], add_generation_prompt=True)"
           "['input_ids'])"},
)
def _prompt_tokens(answer: Any, tok=None) -> bool:
    from transformers import AutoTokenizer

    from ftlib import models

    tok = tok if tok is not None else AutoTokenizer.from_pretrained(models.local_path("smollm2-135m"))
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_dict=True)["input_ids"]
    return int(answer) == len(ids)


# --- notebook 01 -------------------------------------------------------------------------------

@exercise(
    "01.removed_rows",
    {"en": "How many rows (unreadable lines included) does data.clean remove from the raw export with "
           "max_chars=1000?",
     "ja": "max_chars=1000 のとき、data.clean は生データ（読めない行を含む）から何行を除きますか？"},
    {"en": "The report adds up: input rows = kept + removed. Look at report.removed.",
     "ja": "レポートは「入力行数 = 残った行 + 除いた行」になります。report.removed を見ましょう。"},
    {"en": "len(report.removed)", "ja": "len(report.removed)"},
)
def _removed_rows(answer: Any) -> bool:
    from ftlib import data

    raw = data.load_records(data.RAW_EXPORT, data.SUPPORT, errors="collect")
    _, report = data.clean(raw, labels=data.INTENTS, max_chars=1000, rules=data.RULES)
    return int(answer) == len(report.removed)


@exercise(
    "01.mask_phone",
    {"en": "What text does data.mask_pii('Call me at 03-1234-5678 tonight') give (its first value)?",
     "ja": "data.mask_pii('今夜 03-1234-5678 に電話ください') の1つ目の戻り値（文字列）は？"},
    {"en": "Phone numbers become a placeholder in angle brackets; the rest of the text stays.",
     "ja": "電話番号は山かっこのプレースホルダーに置き換わり、ほかの文字はそのまま残ります。"},
    {"en": "'Call me at <PHONE> tonight'", "ja": "'今夜 <PHONE> に電話ください'"},
)
def _mask_phone(answer: Any) -> bool:
    return str(answer).strip().strip("'\"") in {"Call me at <PHONE> tonight", "今夜 <PHONE> に電話ください"}


@exercise(
    "01.leak",
    {"en": "Why must near-duplicate questions land in the same split? (a) to keep the splits the same size "
           "(b) otherwise the test holds questions the model saw in training, and its score is too good "
           "(c) TRL refuses duplicates",
     "ja": "ほぼ同じ質問を同じ分割に入れるのはなぜ？ (a) 分割の大きさをそろえるため "
           "(b) そうしないと学習で見た質問がテストに入り、スコアが良すぎる値になる (c) TRL が重複を拒否するため"},
    {"en": "What does a test score promise about questions the model has never seen?",
     "ja": "テストのスコアは「見たことのない質問」について何を約束するものでしょう？"},
    {"en": "(b)", "ja": "(b)"},
)
def _leak(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "b"


@exercise(
    "01.eos_trained",
    {"en": "In the label preview, is the end-of-turn token after the answer trained? (True/False)",
     "ja": "ラベルのプレビューで、回答の後の終端トークンは学習対象ですか？（True/False）"},
    {"en": "Look at the colour of the last <|im_end|>, or at preview.eos_trained.",
     "ja": "最後の <|im_end|> の色、または preview.eos_trained を見てみましょう。"},
    {"en": "True: it is how the model learns to stop.", "ja": "True。これでモデルは止まり方を学びます。"},
)
def _eos_trained(answer: Any) -> bool:
    return answer is True or _norm(answer) in {"true", "yes", "はい"}


# --- notebook 02 -------------------------------------------------------------------------------

@exercise(
    "02.smallest",
    {"en": "On the same model and settings, which method needs the least training memory?",
     "ja": "同じモデル・同じ設定で、学習に必要なメモリが最も少ない手法は？"},
    {"en": "Compare the weights column of the measured table.", "ja": "計測表の weights の列を比べましょう。"},
    {"en": "qlora", "ja": "qlora"},
)
def _smallest(answer: Any) -> bool:
    return _norm(answer) == "qlora"


@exercise(
    "02.adamw_bytes",
    {"en": "How many bytes of optimizer state does AdamW keep per trainable fp32 parameter?",
     "ja": "AdamW は学習する fp32 パラメータ 1 個あたり、何バイトのオプティマイザ状態を持ちますか？"},
    {"en": "AdamW keeps two running averages (first and second moment) per parameter.",
     "ja": "AdamW はパラメータごとに 2 つの移動平均（1 次と 2 次のモーメント）を持ちます。"},
    {"en": "8 (two fp32 numbers)", "ja": "8（fp32 の数値 2 つ）"},
)
def _adamw_bytes(answer: Any) -> bool:
    return float(answer) == 8


@exercise(
    "02.llama_full",
    {"en": "Does full fine-tuning of Llama-3.1-8B at sequence 1024, batch 1 fit a 15 GB T4? (True/False)",
     "ja": "Llama-3.1-8B のフルファインチューニング（系列長 1024、バッチ 1）は 15 GB の T4 に"
           "収まりますか？（True/False）"},
    {"en": "memory.estimate('llama-3.1-8b', 'full', 1024, 1).fits()",
     "ja": "memory.estimate('llama-3.1-8b', 'full', 1024, 1).fits() を実行してみましょう。"},
    {"en": "False: about 134 GiB", "ja": "False（約 134 GiB）"},
)
def _llama_full(answer: Any) -> bool:
    from ftlib import memory

    return isinstance(answer, bool | str) and _norm(answer) in {"false", "no", "いいえ"} and \
        not memory.estimate("llama-3.1-8b", "full", 1024, 1).fits()


@exercise(
    "02.checkpointing",
    {"en": "Gradient checkpointing trades (a) compute for memory: activations are recomputed in the backward "
           "pass (b) accuracy for memory (c) disk for memory",
     "ja": "勾配チェックポイントは何と何を交換する？ (a) 計算とメモリ：逆伝播で活性を再計算する "
           "(b) 精度とメモリ (c) ディスクとメモリ"},
    {"en": "Compare the activations of estimate(..., gradient_checkpointing=True) and False, and think about "
           "what must happen to the activations that were not kept.",
     "ja": "estimate(..., gradient_checkpointing=True) と False の activations を比べ、"
           "保存しなかった活性がどうなるか考えましょう。"},
    {"en": "(a)", "ja": "(a)"},
)
def _checkpointing(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "a"


# --- notebook 03 -------------------------------------------------------------------------------

@exercise(
    "03.overfit",
    {"en": "Training loss keeps falling while validation loss rises. This is (a) underfitting (b) overfitting "
           "(c) a learning rate that is too low",
     "ja": "学習損失は下がり続け、検証損失は上がっています。これは (a) 学習不足 (b) 過学習 (c) 学習率が低すぎる"},
    {"en": "Which of the two losses tells how the model does on questions it has not seen?",
     "ja": "見ていない質問での出来を示すのは、2つの損失のどちらでしょう？"},
    {"en": "(b): the model memorises the training rows; stop early, add data or regularise.",
     "ja": "(b)。学習データを丸暗記しています。早期終了、データの追加、正則化で対処します。"},
)
def _overfit(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "b"


@exercise(
    "03.lora_params",
    {"en": "How many trainable parameters does LoRA with r=8 on all linear layers of SmolLM2-135M have?",
     "ja": "SmolLM2-135M の全線形層に r=8 の LoRA を付けると、学習するパラメータは何個ですか？"},
    {"en": "Each adapted Linear(in, out) gets A (r x in) and B (out x r): r x (in + out) parameters. Or train "
           "with r=8 and read result.trainable_params.",
     "ja": "Linear(in, out) 1つにつき A (r×in) と B (out×r)、つまり r×(in+out) 個です。"
           "r=8 で学習して result.trainable_params を見ても構いません。"},
    {"en": "2,442,240 (r=16 gives twice as many)", "ja": "2,442,240（r=16 ならその2倍）"},
)
def _lora_params(answer: Any) -> bool:
    from ftlib import memory

    expected = memory.estimate("smollm2-135m", "lora", r=8).trainable_params
    return int(str(answer).replace(",", "").replace("_", "")) == expected


@exercise(
    "03.t4_flag",
    {"en": "Which TrainingArguments flag turns on mixed precision on a T4?",
     "ja": "T4 で混合精度学習を有効にする TrainingArguments のフラグは？"},
    {"en": "The T4 has no bf16; see env.trainer_precision().",
     "ja": "T4 には bf16 がありません。env.trainer_precision() を参照。"},
    {"en": "fp16 (fp16=True)", "ja": "fp16（fp16=True）"},
)
def _t4_flag(answer: Any) -> bool:
    return _norm(answer).replace(" ", "") in {"fp16", "fp16=true"}


@exercise(
    "03.resume",
    {"en": "Colab disconnected in the middle of training. Which argument of train.train continues from the "
           "last checkpoint?",
     "ja": "学習の途中で Colab が切断されました。最後のチェックポイントから再開する train.train の引数は？"},
    {"en": "Read train.train's docstring: help(train.train).", "ja": "help(train.train) で説明を読んでみましょう。"},
    {"en": "resume (resume=True)", "ja": "resume（resume=True）"},
)
def _resume(answer: Any) -> bool:
    return _norm(answer).replace(" ", "") in {"resume", "resume=true"}


# --- notebook 04 -------------------------------------------------------------------------------

@exercise(
    "04.ja_unit",
    {"en": "ftlib scores Japanese ROUGE-L and BLEU on which unit? (a) words split at spaces (b) characters "
           "(c) whole sentences",
     "ja": "ftlib は日本語の ROUGE-L と BLEU を何の単位で計算しますか？ (a) 空白で区切った単語 (b) 文字 (c) 文全体"},
    {"en": "Where are the spaces in 保証期間は18か月です？ Try metrics.rouge_l on it with lang='en'.",
     "ja": "「保証期間は18か月です」のどこに空白がありますか？ lang='en' で metrics.rouge_l を試してみましょう。"},
    {"en": "(b): Japanese has no spaces, so word tokenisation leaves one token per sentence (or none) and "
           "scores near zero; characters need no segmenter.",
     "ja": "(b)。日本語には空白がないため、単語分割では1文が1トークン（または0）になり、ほぼ0点になります。"
           "文字単位なら形態素解析器も不要です。"},
)
def _ja_unit(answer: Any) -> bool:
    return _norm(answer).strip("() ") in {"b", "characters", "character", "char", "文字"}


@exercise(
    "04.perplexity",
    {"en": "A model's mean negative log-likelihood on the validation answers is 1.0 nat per token. "
           "What is its perplexity (two decimals)?",
     "ja": "あるモデルの検証用回答での平均負の対数尤度は 1 トークンあたり 1.0 nat です。"
           "パープレキシティは（小数2桁で）？"},
    {"en": "Perplexity is exp(mean NLL); see metrics.Perplexity.",
     "ja": "パープレキシティは exp(平均NLL) です。metrics.Perplexity を参照。"},
    {"en": "e = 2.72: as unsure as a fair choice among about 2.7 tokens.",
     "ja": "e = 2.72。約 2.7 個のトークンから公平に選ぶのと同じくらいの迷いです。"},
)
def _perplexity(answer: Any) -> bool:
    return abs(float(answer) - 2.718) < 0.01


@exercise(
    "04.win_rate",
    {"en": "A rater judged tuned better 12 times, base better 6 times, 4 ties and 2 both bad. What is the tuned "
           "model's win rate as review.win_rate computes it?",
     "ja": "評価者は tuned の勝ち 12 回、base の勝ち 6 回、引き分け 4 回、両方だめ 2 回と判定しました。"
           "review.win_rate が計算する tuned の勝率は？"},
    {"en": "Ties and 'both bad' say nothing about which is better; read help(review.win_rate).",
     "ja": "引き分けと「両方だめ」はどちらが良いかを示しません。help(review.win_rate) を読んでみましょう。"},
    {"en": "12 / (12 + 6) = 0.667 (67%)", "ja": "12 / (12 + 6) = 0.667（67%）"},
)
def _win_rate(answer: Any) -> bool:
    text = str(answer).strip()
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    return abs(value - 2 / 3) < 0.005


@exercise(
    "04.batching",
    {"en": "Going from batch 1 to batch 16, which gets better? (a) answers per second (b) the wait for one answer",
     "ja": "バッチサイズを 1 から 16 にすると、良くなるのはどちら？ (a) 1秒あたりの回答数 (b) 1つの回答を待つ時間"},
    {"en": "Compare the columns 's/answer' and 'latency p50 s' of the speed table.",
     "ja": "速度表の 's/answer' と 'latency p50 s' の列を比べてみましょう。"},
    {"en": "(a): throughput rises, while each answer waits for its whole batch (latency grows).",
     "ja": "(a)。スループットは上がりますが、各回答はバッチ全体を待つため待ち時間（レイテンシ）は伸びます。"},
)
def _batching(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "a"


# --- notebook 05 -------------------------------------------------------------------------------

@exercise(
    "05.spaces",
    {"en": "Which way of cutting Japanese text into terms gave the retriever the lowest recall@3? (a) dictionary "
           "words (b) characters and character pairs (c) splitting on spaces",
     "ja": "日本語の文を語に分ける方法のうち、recall@3 が最も低かったのはどれですか？ (a) 辞書による単語 "
           "(b) 文字と2文字の組 (c) 空白で区切る"},
    {"en": "Run section 1's recall table with LANG = \"ja\".",
     "ja": "LANG = \"ja\" で 1 節の recall の表を見てみましょう。"},
    {"en": "(c): Japanese has no spaces between words, so each sentence becomes one \"word\" that matches nothing.",
     "ja": "(c)。日本語には語の間に空白がないため、文全体が1つの「語」になり、何にも一致しません。"},
)
def _spaces(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "c"


@exercise(
    "05.kv_bytes",
    {"en": "How many bytes of key/value cache does SmolLM2-135M keep per token in fp32? (30 layers, 3 key/value "
           "heads of size 64)",
     "ja": "SmolLM2-135M は fp32 で 1 トークンあたり何バイトのキー・バリューキャッシュを持ちますか？"
           "（30 層、サイズ 64 のキー・バリューヘッドが 3 つ）"},
    {"en": "Keys and values: 2 x layers x heads x head size x bytes per value; or memory.kv_cache_bytes.",
     "ja": "キーとバリューで 2 × 層数 × ヘッド数 × ヘッドのサイズ × 1 値のバイト数。"
           "memory.kv_cache_bytes でも計算できます。"},
    {"en": "46,080 bytes (2 x 30 x 3 x 64 x 4): a 1,000-token prompt keeps 46 MB per answer.",
     "ja": "46,080 バイト（2 × 30 × 3 × 64 × 4）。1,000 トークンのプロンプトなら 1 回答あたり 46 MB です。"},
)
def _kv_bytes(answer: Any) -> bool:
    return int(str(answer).replace(",", "")) == 2 * 30 * 3 * 64 * 4


@exercise(
    "05.paid_once",
    {"en": "Which column of the comparison table is a cost paid once, not on every question? (a) prompt tokens "
           "(b) set-up s (c) s/answer",
     "ja": "比較表のうち、質問ごとではなく一度だけ払うコストの列はどれですか？ (a) prompt tokens "
           "(b) set-up s (c) s/answer"},
    {"en": "Which column would not grow if you asked ten times as many questions?",
     "ja": "質問を10倍にしても増えない列はどれでしょう？"},
    {"en": "(b): training or indexing happens once; prompt tokens and time are paid again for every question.",
     "ja": "(b)。学習やインデックス作成は一度だけで、プロンプトのトークンと時間は質問のたびにかかります。"},
)
def _paid_once(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "b"


# --- notebook 06 -------------------------------------------------------------------------------

@exercise(
    "06.chance",
    {"en": "Predict before section 2 runs: what accuracy does a head that picks one of the 12 intents at random "
           "score on average? (a number between 0 and 1)",
     "ja": "セクション 2 を実行する前に予想しましょう。12 の意図から無作為に 1 つ選ぶヘッドの正解率は平均いくつですか？"
           "（0 から 1 の数）"},
    {"en": "Each message has one right intent out of how many?",
     "ja": "各メッセージの正解は、いくつのうち 1 つですか？"},
    {"en": "1/12 = 0.083: the baseline every trained number is read against (an untrained head often does worse, "
           "putting most messages into one or two intents).",
     "ja": "1/12 = 0.083。学習後の数値はすべてこの基準と比べます（学習前のヘッドは多くのメッセージを 1〜2 個の意図に"
           "入れるので、これより悪いこともあります）。"},
)
def _chance(answer: Any) -> bool:
    value = str(answer).replace(" ", "")
    return value == "1/12" or (value.replace(".", "", 1).isdigit() and abs(float(value) - 1 / 12) < 0.005)


@exercise(
    "06.weight",
    {"en": "120 training messages, 12 intents, and one intent has only 5 messages. What weight does "
           "classify.class_weights (scikit-learn's 'balanced') give that intent?",
     "ja": "学習用メッセージが 120 件、意図が 12 個で、ある意図は 5 件しかありません。classify.class_weights"
           "（scikit-learn の 'balanced'）はその意図にいくつの重みを付けますか？"},
    {"en": "n_rows / (n_classes x rows of that class).", "ja": "行数 ÷ (クラス数 × そのクラスの行数)。"},
    {"en": "2.0 = 120 / (12 x 5): each of its messages counts twice in the loss; a balanced intent (10 rows) gets "
           "1.0.",
     "ja": "2.0 = 120 / (12 × 5)。その意図のメッセージは損失の中で 2 倍に数えられます。"
           "釣り合った意図（10 件）は 1.0 です。"},
)
def _weight(answer: Any) -> bool:
    try:
        return abs(float(str(answer)) - 2.0) < 1e-6
    except ValueError:
        return False


@exercise(
    "06.rare_metric",
    {"en": "100 test messages; an intent with 2 of them is never predicted, the other 98 are all right. Which "
           "number falls further below a perfect 1.0? (a) accuracy (b) macro-F1",
     "ja": "テストメッセージ 100 件のうち 2 件の意図が一度も予測されず、残り 98 件はすべて正解です。"
           "満点 1.0 から大きく下がるのはどちら？ (a) 正解率 (b) マクロ F1"},
    {"en": "Accuracy counts messages; macro-F1 averages over intents with equal weight.",
     "ja": "正解率はメッセージを数え、マクロ F1 は意図ごとの F1 を等しい重みで平均します。"},
    {"en": "(b): accuracy is 0.98, but the missed intent's F1 is 0, which pulls the average over intents down by "
           "1/(number of intents).",
     "ja": "(b)。正解率は 0.98 ですが、予測されない意図の F1 は 0 で、意図の平均を 1/(意図の数) だけ下げます。"},
)
def _rare_metric(answer: Any) -> bool:
    return _norm(answer).strip("() ") in {"b", "macro-f1", "macro f1"}


# --- notebook 07 -------------------------------------------------------------------------------

@exercise(
    "07.merge_4bit",
    {"en": "You trained a QLoRA adapter. Into what do you merge it? (a) the 4-bit base it was trained on "
           "(b) the base loaded in 16 bits (c) it cannot be merged",
     "ja": "QLoRA でアダプターを学習しました。何にマージしますか？ (a) 学習に使った 4-bit のベース "
           "(b) 16 bit で読み込んだベース (c) マージできない"},
    {"en": "Look at the logit differences in section 1's table.", "ja": "1 節の表のロジット差を見てみましょう。"},
    {"en": "(b): merging into 4-bit weights means re-quantizing them, and the model no longer answers as trained.",
     "ja": "(b)。4-bit の重みへのマージは重みの再量子化を伴い、学習したとおりに答えなくなります。"},
)
def _merge_4bit(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "b"


@exercise(
    "07.base",
    {"en": "A PeftModel holds two adapters. Which peft method (a context manager) answers with the plain base?",
     "ja": "PeftModel に2つのアダプターがあります。素のベースモデルで答えさせる peft のメソッド"
           "（コンテキストマネージャ）は？"},
    {"en": "Read export.answer_with's source: help(export.answer_with) or export.answer_with??",
     "ja": "export.answer_with のソースを読んでみましょう（export.answer_with??）。"},
    {"en": "disable_adapter (with model.disable_adapter(): ...)",
     "ja": "disable_adapter（with model.disable_adapter(): ...）"},
)
def _base(answer: Any) -> bool:
    return _norm(answer).removeprefix("model.").removesuffix("()") == "disable_adapter"


@exercise(
    "07.status",
    {"en": "Which HTTP status code does the endpoint answer to an empty message?",
     "ja": "空のメッセージに対して、エンドポイントはどの HTTP ステータスコードを返しますか？"},
    {"en": "Look at the table of bad requests in section 4.", "ja": "4 節の不正なリクエストの表を見てみましょう。"},
    {"en": "422 (Unprocessable Content): the request is well-formed JSON but its content is invalid.",
     "ja": "422（Unprocessable Content）。JSON としては正しいが、内容が不正です。"},
)
def _status(answer: Any) -> bool:
    return str(answer).strip() == "422"


# --- notebook 08 -------------------------------------------------------------------------------

@exercise(
    "08.steps",
    {"en": "Your file has 200 rows. After the split 160 are for training. With per_device_train_batch_size=8, "
           "gradient_accumulation_steps=1 and num_train_epochs=3 (max_steps=-1), how many optimizer steps run?",
     "ja": "ファイルは 200 行で、分割後 160 行が学習用です。per_device_train_batch_size=8、"
           "gradient_accumulation_steps=1、num_train_epochs=3（max_steps=-1）なら、最適化のステップは何回ですか？"},
    {"en": "One step per batch: rows / batch steps per epoch, times the epochs.",
     "ja": "1 バッチで 1 ステップ。1 エポックのステップ数は 行数 ÷ バッチ、それにエポック数を掛けます。"},
    {"en": "60 (160 / 8 = 20 per epoch, x 3). Check it: result.history.step.max() after training.",
     "ja": "60（160 ÷ 8 = 1 エポック 20 ステップ、× 3）。学習後に result.history.step.max() で確かめられます。"},
)
def _steps(answer: Any) -> bool:
    return _norm(answer) == "60"


@exercise(
    "08.interval",
    {"en": "The before/after table says: change +0.12, 95% interval [-0.04, +0.29], n=12. What does this run "
           "show? (a) fine-tuning helped (b) fine-tuning hurt (c) not distinguishable at this n",
     "ja": "前後比較の表は「change +0.12、95% interval [-0.04, +0.29]、n=12」です。この結果から言えるのは？ "
           "(a) ファインチューニングで良くなった (b) 悪くなった (c) この n では区別できない"},
    {"en": "Does the interval include 0?", "ja": "区間に 0 は含まれていますか？"},
    {"en": "(c): the interval includes 0, so a change of nothing is as consistent with the data as +0.12. More "
           "held-out rows narrow it.",
     "ja": "(c)。区間が 0 を含むので、変化なしも +0.12 と同じくらいデータと矛盾しません。"
           "評価する行を増やすと区間は狭くなります。"},
)
def _interval(answer: Any) -> bool:
    return _norm(answer).strip("() ") == "c"


@exercise(
    "08.leak",
    {"en": "Two rows of your file ask 'What are your hours?' and 'what are your hours'. Can data.split put one in "
           "training and the other in the test split? (yes / no)",
     "ja": "ファイルの 2 行が「What are your hours?」と「what are your hours」を尋ねています。data.split は"
           "片方を学習用、もう片方をテスト用に分けることがありますか？（yes / no）"},
    {"en": "Look at data.dedup_key of both questions.", "ja": "両方の質問の data.dedup_key を見てみましょう。"},
    {"en": "no: both have the same dedup_key (case and punctuation dropped), so they land in the same split; "
           "otherwise the test would ask a question the model was trained on.",
     "ja": "no。dedup_key（大文字小文字と句読点を除いたもの）が同じなので、同じ分割に入ります。"
           "そうでなければ、学習した質問をテストで尋ねることになります。"},
)
def _leak08(answer: Any) -> bool:
    return _norm(answer) in {"no", "いいえ"}
