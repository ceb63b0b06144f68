"""The seeds' claims, measured: cleaned vs raw training rows, and full fine-tuning vs LoRA vs QLoRA at equal steps.

    result = claims.run("auto", lang="en")   # trains every arm with the CPU course settings: minutes, see bench/README
    result.table()          # each arm on each question set: value, 95% interval, n
    result.comparisons()    # each claim: the paired change on the same questions, its 95% interval, what it supports
    result.save()           # bench/results/claims_<lang>.json; claims.load(lang) reads it back

Every arm trains the same rows for the same steps, batch and seed (recipe.course_settings(on_gpu=False)); only the
variable under test changes. Every sentence comes from the intervals (metrics.compare, metrics.ladder), never from
the point estimates. bench/claims.py runs it from the command line; notebook 02 shows the reference run.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from transformers import PrinterCallback

from ftlib import data, env, generate, metrics, models, recipe, train

RESULTS = env.ROOT / "bench" / "results"
FULL_LEARNING_RATE = 1e-4  # full fine-tuning moves every weight: LoRA's 3e-3 would wreck the model (bench/README)
SETS = ("trained facts", "untrained facts", "general")
ARMS = {  # key: (label, method, training rows) -- every arm but "base" trains for the same steps
    "base": ("base model (no training)", None, None),
    "lora": ("LoRA, cleaned rows", "lora", "clean"),
    "lora_raw": ("LoRA, raw export", "lora", "raw"),
    "qlora": ("QLoRA, cleaned rows", "qlora", "clean"),
    "full": ("full fine-tuning, cleaned rows", "full", "clean"),
}
CLAIMS = (  # (topic, the claim, question set, before arm, after arm)
    ("fine-tuning", "LoRA learns the trained facts", "trained facts", "base", "lora"),
    ("fine-tuning", "LoRA does not learn facts it never saw", "untrained facts", "base", "lora"),
    ("data quality", "cleaned rows train a better model than the raw export", "trained facts", "lora_raw", "lora"),
    ("method", "QLoRA reaches LoRA's quality", "trained facts", "lora", "qlora"),
    ("method", "full fine-tuning beats LoRA", "trained facts", "lora", "full"),
    ("general ability", "LoRA keeps general ability", "general", "base", "lora"),
    ("general ability", "QLoRA keeps general ability", "general", "base", "qlora"),
    ("general ability", "full fine-tuning keeps general ability", "general", "base", "full"),
    ("general ability", "LoRA keeps more general ability than full fine-tuning", "general", "full", "lora"),
)
METHOD_ORDER = ("qlora", "lora", "full")  # the guide's memory table: accuracy "high", "high", "best"


def _key(question: str) -> str:
    """A question as clean() would leave it (HTML, width, personal data), reduced to its dedup_key."""
    return data.dedup_key(data.mask_pii(data.normalize_width(data.strip_html(question)))[0])


def raw_rows(lang: str = "en", seed: int = 0, focus=None):
    """The raw export's rows of `lang` (and of the `focus` intents, as the export labels them) formatted for training
    without clean(): its HTML, personal data, empty answers and duplicates stay. Rows asking a question the course
    holds out (its validation and test questions) are left out, so no arm is tested on a question it trained on.

    Used by claims.run (notebook 02).
    """
    frame = data.load_records(data.RAW_EXPORT, data.SUPPORT, errors="collect")
    frame = frame[(frame["lang"] == lang) & (frame["intent"].isin(focus) if focus else True)]
    course = data.course_dataset(lang, seed)
    held = {_key(row["prompt"][-1]["content"]) for split in ("validation", "test") for row in course[split]}
    frame = frame[~frame["question"].map(_key).isin(held)]
    return data.to_dataset({"train": frame}, lang, system=data.SYSTEM_PROMPT[lang])["train"]


def fit(model, method: str, rows, steps: int, learning_rate: float, seed: int = 0, lang: str = "en"):
    """Train `model` on `rows` for `steps` steps exactly as train.train does (recipe.prepare, recipe.sft_config,
    train.CourseSFTTrainer), without evaluations or checkpoints, and keep the trained model in memory.
    method: "lora", "qlora" or "full". Returns (model, tokenizer, history). Used by claims.run (notebook 02).
    """
    env.seed_everything(seed)
    net, tokenizer = recipe.prepare(model, method, recipe.lora_config(lora_dropout=0.0), lang=lang)
    with tempfile.TemporaryDirectory() as tmp:
        args = recipe.sft_config(tmp, seed, learning_rate=learning_rate, max_steps=steps, eval_strategy="no",
                                 eval_on_start=False, save_strategy="no", disable_tqdm=True)
        trainer = train.CourseSFTTrainer(model=net, args=args, train_dataset=rows, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # it prints every log line when the progress bar is off
        trainer.train()
    return trainer.model, tokenizer, train.history_frame(trainer.state.log_history)


def scores(model, tokenizer, sets: dict, batch_size: int = 32, max_new_tokens: int = 40) -> dict[str, list[float]]:
    """Per-question scores of one model on each question set: the share of its facts the answer contains
    (metrics.row_scores) for fact sets, 1 or 0 for "general" (the answer contains an accepted answer, as
    metrics.score's general accuracy: 16 new tokens). Used by claims.run (notebook 02).
    """
    out = {}
    for name, rows in sets.items():
        prompts = [row["prompt"] for row in rows]
        if name == "general":
            said = generate.generate(model, tokenizer, prompts, 16, batch_size).texts
            out[name] = [float(metrics.fact_hits(a, row["accept"]) > 0) for a, row in zip(said, rows, strict=True)]
        else:
            said = generate.generate(model, tokenizer, prompts, max_new_tokens, batch_size).texts
            out[name] = metrics.row_scores(said, [row["completion"][0]["content"] for row in rows], rows["facts"])
    return out


@dataclass(repr=False)
class Claims:
    """One run of the experiment: `meta` (model, language, steps, date, command, minutes, and `file` when loaded from
    one) and per arm its settings and per-question scores on each set. Tables and sentences are computed from the
    scores; `topic` (see only) limits them to one topic of CLAIMS. Taught in notebook 02.
    """

    meta: dict
    arms: dict[str, dict] = field(default_factory=dict)
    topic: str | None = None

    def _scores(self, arm: str, name: str) -> list[float | None]:
        return self.arms[arm]["scores"][name]

    def only(self, topic: str) -> Claims:
        """The same run limited to one topic of CLAIMS ("data quality", "method", ...) and the arms it compares."""
        used = {arm for subject, _, _, before, after in CLAIMS if subject == topic for arm in (before, after)}
        return Claims(self.meta, {arm: info for arm, info in self.arms.items() if arm in used}, topic)

    def table(self) -> pd.DataFrame:
        """One row per arm: what it trained (method, rows, learning rate, seconds, loss) and, per question set,
        the mean score with its 95% interval and n."""
        rows = {}
        for arm, info in self.arms.items():
            row = {"method": info["method"] or "-", "training rows": info["rows"] or "-",
                   "learning rate": info["learning_rate"] or "-", "train s": info["train_seconds"] or "-",
                   "loss first -> last": info["loss"] or "-"}
            for name in SETS:
                est = metrics.interval(self._scores(arm, name))
                row[name] = f"{est.value:.2f} [{est.low:.2f}, {est.high:.2f}]"
                row[f"n {name}"] = est.n
            rows[info["label"]] = row
        return pd.DataFrame(rows).T

    def comparisons(self) -> list[tuple[str, str, metrics.Comparison]]:
        """(topic, claim, Comparison) for each claim of CLAIMS (of `topic`, when set) whose two arms ran: the paired
        change on the same questions, with each arm's own interval."""
        out = []
        for subject, claim, name, before, after in CLAIMS:
            if self.topic in (None, subject) and before in self.arms and after in self.arms:
                label = f"{self.arms[before]['label']} -> {self.arms[after]['label']}, {name}"
                out.append((subject, claim, metrics.compare(self._scores(before, name), self._scores(after, name),
                                                            label)))
        return out

    def frame(self) -> pd.DataFrame:
        """The comparisons as one table: n, each arm's value and 95% interval, the change and its interval, the
        verdict."""
        rows = []
        for subject, claim, comparison in self.comparisons():
            row = comparison.frame().reset_index()
            row.insert(0, "claim", claim)
            row.insert(0, "topic", subject)
            row["verdict"] = comparison.verdict.split(":")[0]
            rows.append(row)
        return pd.concat(rows, ignore_index=True).set_index(["topic", "claim"])

    def ladder(self) -> metrics.Ladder | None:
        """The guide's accuracy order of the methods (QLoRA <= LoRA <= full) on the trained facts, judged by
        metrics.ladder; None when a method's arm did not run."""
        if self.topic not in (None, "method") or not all(arm in self.arms for arm in METHOD_ORDER):
            return None
        return metrics.ladder({arm: self._scores(arm, "trained facts") for arm in METHOD_ORDER}, list(METHOD_ORDER),
                              "fact share")

    def sentences(self) -> list[str]:
        """One sentence per claim, its words decided by the 95% interval of the paired change ("not
        distinguishable at this n" when it includes 0), each arm's value and interval quoted."""
        out = []
        for _, claim, c in self.comparisons():
            before, after = c.before_interval, c.after_interval
            out.append(f"{claim}? {c.metric}: {before.value:.2f} [{before.low:.2f}, {before.high:.2f}] -> "
                       f"{after.value:.2f} [{after.low:.2f}, {after.high:.2f}], change {c.after - c.before:+.2f} "
                       f"[{c.low:+.2f}, {c.high:+.2f}]: {c.verdict}.")
        ladder = self.ladder()
        if ladder is not None:
            out.append(f"The guide's method order on the trained facts: {ladder.verdict}.")
        return out

    @property
    def source(self) -> str:
        """Where these numbers come from: the reference run's file, or a run just now; date, command, machine."""
        m = self.meta
        where = f"Reference run, saved in {m['file']}" if "file" in m else "Run"
        return (f"{where}: {m['model']}, {m['lang']}, {m['steps']} steps, seed {m['seed']}, on {m['date']} in "
                f"{m['minutes']:.0f} min on a {m['machine']} (`{m['command']}`)")

    def __repr__(self) -> str:
        return "\n\n".join([self.source, self.table().to_string(), self.frame().to_string(), *self.sentences()])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{s}</li>" for s in self.sentences())
        return f"<p>{self.source}</p>{self.table().to_html()}{self.frame().to_html()}<ul>{items}</ul>"

    def to_json(self) -> dict:
        """meta, arms (with their per-question scores) and, for readers of the file, each claim's numbers."""
        claims = [{"topic": t, "claim": claim, "comparison": c.metric, "n": c.n, "before": c.before_interval.as_dict(),
                   "after": c.after_interval.as_dict(), "change": c.after - c.before, "change_low": c.low,
                   "change_high": c.high, "verdict": c.verdict} for t, claim, c in self.comparisons()]
        return {"meta": self.meta, "arms": self.arms, "claims": claims, "sentences": self.sentences()}

    def save(self, file: str | Path | None = None) -> Path:
        """Write to_json() to `file` (default: path(lang), bench/results/claims_<lang>.json)."""
        file = Path(file or path(self.meta["lang"]))
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return file


def path(lang: str = "en") -> Path:
    """Where the reference run of `lang` is kept: bench/results/claims_<lang>.json. Taught in notebook 02."""
    return RESULTS / f"claims_{lang}.json"


def load(lang: str = "en", file: str | Path | None = None) -> Claims:
    """The saved run of `lang` (bench/results/claims_<lang>.json, or `file`); its source names the file.

    Taught in notebook 02.
    """
    file = Path(file or path(lang))
    saved = json.loads(file.read_text(encoding="utf-8"))
    shown = file.relative_to(env.ROOT) if file.is_relative_to(env.ROOT) else file
    return Claims({**saved["meta"], "file": str(shown)}, saved["arms"])


def run(model="auto", lang: str = "en", steps: int | None = None, seed: int = 0, arms=tuple(ARMS),
        learning_rate: float | None = None, full_learning_rate: float = FULL_LEARNING_RATE, batch_size: int = 32,
        max_new_tokens: int = 40, limit: int | None = None, file: str | Path | None = None, resume: bool = False,
        log=print) -> Claims:
    """Run the experiment: each arm of `arms` (keys of ARMS) trained on the CPU course settings (the two CPU_FOCUS
    intents, CPU_STEPS["en"] steps of 8 rows, LoRA/QLoRA at 3e-3, full fine-tuning at `full_learning_rate`) and
    scored on the same questions: data.eval_sets of the cleaned training rows (trained facts, untrained facts) and
    data.general_dataset (the first `limit` questions of each when given). model: a preset name or hub id, loaded
    afresh for each arm. file: save the run there after each arm; resume: keep the arms `file` already holds when
    it was run with the same settings (a long run cut off goes on where it stopped). Taught in notebook 02.
    """
    settings = recipe.course_settings(on_gpu=False)
    steps = steps or settings["max_steps"]
    learning_rate = learning_rate or settings["learning_rate"]
    focus = settings["focus"]
    clean = data.course_dataset(lang, seed)["train"].filter(lambda row: row["intent"] in focus)
    rows = {"clean": clean, "raw": raw_rows(lang, seed, focus)}
    sets = {**data.eval_sets(clean, lang, seed), "general": data.general_dataset(lang)}
    sets = {name: rows if limit is None else rows.select(range(min(limit, len(rows)))) for name, rows in sets.items()}
    command = f"python bench/claims.py --lang {lang} --steps {steps}" + (f" --seed {seed}" if seed else "") + (
        f" --full-lr {full_learning_rate:g}" if full_learning_rate != FULL_LEARNING_RATE else "")
    name = train.model_name(model, lang) if isinstance(model, str) else "model"
    same = {"model": name, "lang": lang, "steps": steps, "seed": seed, "batch": recipe.BATCH, "focus": list(focus),
            "learning_rate": learning_rate, "full_learning_rate": full_learning_rate, "limit": limit,
            "max_new_tokens": max_new_tokens}
    result = Claims({**same, "machine": f"{os.cpu_count()}-core {platform.machine()} {env.device()}",
                     "command": command})
    if resume and file is not None and Path(file).exists():
        saved = load(file=file)
        if all(saved.meta.get(key) == value for key, value in same.items()):
            result.arms = {arm: info for arm, info in saved.arms.items() if arm in arms}
            result.meta |= {key: saved.meta[key] for key in ("date", "minutes")}
    for arm in arms:
        label, method, source = ARMS[arm]
        if arm in result.arms:
            log(f"{label}: kept from {file}")
            continue
        log(f"{label}: training" if method else label)
        tic = time.perf_counter()
        if method is None:
            net, tokenizer = models.load(model, lang=lang)
            info = {"method": None, "rows": None, "learning_rate": None, "train_seconds": None, "loss": None}
        else:
            lr = full_learning_rate if method == "full" else learning_rate
            net, tokenizer, history = fit(model, method, rows[source], steps, lr, seed, lang)
            losses = history["train_loss"].dropna()
            info = {"method": method, "rows": f"{len(rows[source])} {source}", "learning_rate": lr,
                    "train_seconds": round(time.perf_counter() - tic, 1),
                    "loss": f"{losses.iloc[0]:.2f} -> {losses.iloc[-1]:.2f}"}
        info["scores"] = scores(net, tokenizer, sets, batch_size, max_new_tokens)
        del net
        gc.collect()
        result.arms[arm] = {"label": label, **info, "seconds": round(time.perf_counter() - tic, 1)}
        result.meta |= {"date": time.strftime("%Y-%m-%d"),
                        "minutes": round(sum(a["seconds"] for a in result.arms.values()) / 60, 1)}
        if file is not None:
            result.save(file)
        log(f"{label}: done in {result.arms[arm]['seconds']:.0f} s")
    return result
