"""Run the whole course: execute every notebook in order with papermill (used by `make course` and CI); and say
where the course lives.

    python -m ftlib.course run [--only 00 03] [-p KEY=VALUE ...] [--notebooks DIR] [--build DIR] [--gpu-report]
    python -m ftlib.course badges --repo OWNER/NAME [--ref REF]   # point every badge and setup cell at a fork
    python -m ftlib.course plan --gpu t4 [-p LANG=ja]               # every step's memory on a T4: fits or not

Executed copies go to build/, with build/course_report.md (notebook, status, seconds, peak memory) and
build/course_results.json (each notebook's headline measurements with n and 95% interval, from `record`).
Cells tagged "show" have their text output echoed to the terminal, so a run shows what matters
(for example the model's reply in notebook 00). Exits non-zero naming the failing notebook and cell.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ftlib import env
from ftlib.env import ROOT

RESULTS = "FTLIB_RESULTS"  # the runner points this at build/course_results.json for the notebooks it runs
REPO = "ftlib-course/ftlib"  # where the course lives on GitHub: every badge, setup cell and README link names it
REF = "v0.1.0"  # the tag they install: "v" + ftlib.__version__ (`badges --ref` may name a branch of a fork)
LINK = re.compile(  # a notebook's address on GitHub, as Colab, Kaggle and GitHub links write it
    r"(?P<host>github\.com/|google\.com/github/)(?P<repo>[\w.-]+/[\w.-]+)/blob/(?P<ref>[\w.-]+)/notebooks/")
SETUP = re.compile(r'^REPO, REF = "(?P<repo>[^"]*)", "(?P<ref>[^"]*)"', re.M)  # the setup cell's line
HERE = re.compile(r'^(?P<name>REPO|REF) = "[^"]*"', re.M)  # this module's two lines


@dataclass
class Result:
    """How one notebook ran."""

    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    peak_mib: float
    error: str = ""
    peak_vram_mib: float | None = None  # the GPU's memory in use at its peak (nvidia-smi), on a GPU


def results_path() -> Path:
    """Where `record` writes: $FTLIB_RESULTS (the course runner's build/course_results.json), else
    runs/course_results.json."""
    return Path(os.environ.get(RESULTS) or env.runs_dir() / "course_results.json")


def record(notebook: str, **measurements) -> dict:
    """Keep a notebook's headline measurements (metrics.Estimate or plain values) under its number in
    course_results.json, so an instructor can set a room's runs beside the reference and tests can read them.
    Returns what the file now holds for `notebook`. Taught in notebook 03.
    """
    path = results_path()
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entry = results.setdefault(notebook, {})
    entry.update({key: value.as_dict() if hasattr(value, "as_dict") else value
                  for key, value in measurements.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return entry


def notebooks(folder: Path = ROOT / "notebooks", only: list[str] | None = None) -> list[Path]:
    """The course notebooks in teaching order (NN_*.ipynb), optionally only those whose number is in `only`."""
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [nb for nb in found if nb.name[:2] in only]
    return found


def parse_parameters(pairs: list[str]) -> dict:
    """['MAX_STEPS=5', 'LANG=ja'] -> {'MAX_STEPS': 5, 'LANG': 'ja'} (Python literals, else strings)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"-p expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def gpu_memory_mib() -> float | None:
    """The memory in use on GPU 0, in MiB, as nvidia-smi reports it; None without an NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                          capture_output=True, text=True)
    return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None


class PeakMemory:
    """Samples the resident memory of this process's children (the kernel) in a background thread, and the GPU's
    memory in use (nvidia-smi) where there is one."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self.gpu = shutil.which("nvidia-smi") is not None
        self.peak_vram: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.every):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            used = gpu_memory_mib() if self.gpu else None
            if used is not None:
                self.peak_vram = max(self.peak_vram or 0.0, used)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def shown_outputs(path: Path) -> list[str]:
    """Text outputs of the cells tagged "show" in an executed notebook."""
    import nbformat

    texts = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or "show" not in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                texts.append(out["text"])
            elif out.get("output_type") == "execute_result" and "text/plain" in out.get("data", {}):
                texts.append(out["data"]["text/plain"])
    return texts


def run_one(notebook: Path, build: Path, parameters: dict, timeout: int | None = None) -> Result:
    """Execute one notebook with papermill into `build`; never raises for a failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = build / notebook.name
    start, error = time.perf_counter(), ""
    with PeakMemory() as memory:
        try:
            papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                                       cwd=str(notebook.parent), progress_bar=True, execution_timeout=timeout)
        except PapermillExecutionError as err:
            error = f"cell {err.cell_index} (execution count {err.exec_count}): {err.ename}: {err.evalue}"
        except Exception as err:  # kernel died, timeout, bad notebook: still a report line
            error = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    return Result(notebook.name, "failed" if error else "ok", seconds, memory.peak / 2**20, error, memory.peak_vram)


def write_report(results: list[Result], path: Path, parameters: dict) -> str:
    """Write the markdown report of a course run and return its text."""
    lines = [
        "# Course run", "",
        f"parameters: {parameters or 'defaults'}", "",
        "| notebook | status | seconds | peak memory (MiB) |", "|---|---|---:|---:|",
    ]
    lines += [f"| {r.notebook} | {r.status} | {r.seconds:.0f} | {r.peak_mib:.0f} |" for r in results]
    lines += ["", f"total: {sum(r.seconds for r in results):.0f} s"]
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Failures", ""] + [f"- {r.notebook}: {r.error}" for r in failed]
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


GPU_REPORT = ("<!-- gpu-report: written by python -m ftlib.course run --gpu-report -->", "<!-- gpu-report end -->")


def gpu_report(results: list[Result], headline: dict, gpu: str, parameters: dict | None = None,
               path: Path = ROOT / "bench" / "README.md") -> str:
    """Write the measured GPU rows into `path` (bench/README.md) between the GPU_REPORT markers, replacing an earlier
    report: per notebook its status, seconds and peak GPU memory, and notebook 03's headline. Returns the section."""
    rows = [f"| {r.notebook} | {r.status} | {r.seconds:.0f} | "
            f"{'-' if r.peak_vram_mib is None else f'{r.peak_vram_mib / 1024:.1f}'} |" for r in results]
    lines = [GPU_REPORT[0], f"### The course on a GPU: {gpu}, {time.strftime('%Y-%m-%d')}", "",
             f"`python -m ftlib.course run --gpu-report`, parameters {parameters or 'defaults'}; measured, not "
             "estimated. Peak GPU memory is what nvidia-smi saw in use on the card.", "",
             "| notebook | status | seconds | peak GPU memory (GiB) |", "|---|---|---:|---:|", *rows,
             f"| total | | {sum(r.seconds for r in results):.0f} | |"]
    before, after = headline.get("fact_hit_before"), headline.get("fact_hit_after")
    if before and after:
        lines += ["", f"Notebook 03 ({headline.get('model')}, {headline.get('lang')}): fact hit rate on trained facts "
                      f"{before['value']:.2f} [{before['low']:.2f}, {before['high']:.2f}] -> {after['value']:.2f} "
                      f"[{after['low']:.2f}, {after['high']:.2f}], n={after['n']}."]
    section = "\n".join([*lines, GPU_REPORT[1]])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if GPU_REPORT[0] in text and GPU_REPORT[1] in text:
        start, end = text.index(GPU_REPORT[0]), text.index(GPU_REPORT[1]) + len(GPU_REPORT[1])
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
    return section


def run(only: list[str] | None = None, parameters: dict | None = None, folder: Path = ROOT / "notebooks",
        build: Path = ROOT / "build", timeout: int | None = None) -> list[Result]:
    """Execute the course notebooks in order and write build/course_report.md. Used by `make course`."""
    parameters = parameters or {}
    build.mkdir(parents=True, exist_ok=True)
    chosen = notebooks(folder, only)
    if not chosen:
        raise SystemExit(f"no notebooks matched {only} in {folder}")
    os.environ[RESULTS] = str(build / "course_results.json")  # the kernels inherit it: `record` writes there
    results = []
    for i, nb in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {nb.name}", flush=True)
        result = run_one(nb, build, parameters, timeout)
        results.append(result)
        for text in shown_outputs(build / nb.name):
            print("    " + text.rstrip().replace("\n", "\n    "))
        print(f"    -> {result.status} in {result.seconds:.0f} s, peak {result.peak_mib:.0f} MiB"
              + (f"\n    {result.error}" if result.error else ""), flush=True)
    print("\n" + write_report(results, build / "course_report.md", parameters))
    return results


def sources(text: str) -> set[tuple[str, str]]:
    """Every (repo, ref) a text names: notebook links (Colab, Kaggle, GitHub) and setup cells."""
    return {(m["repo"], m["ref"]) for pattern in (LINK, SETUP) for m in pattern.finditer(text)}


def point_to(text: str, repo: str, ref: str) -> str:
    """The text with every notebook link and setup cell naming `repo` at `ref`."""
    text = LINK.sub(lambda m: f"{m['host']}{repo}/blob/{ref}/notebooks/", text)
    return SETUP.sub(f'REPO, REF = "{repo}", "{ref}"', text)


def course_files(root: Path = ROOT) -> list[Path]:
    """The files that say where the course lives: READMEs, English notebooks, Japanese translations, this module.
    (The Japanese notebooks are built from the English ones and the translations.)"""
    files = [root / "README.md", root / "README.ja.md", *sorted((root / "notebooks").glob("*.ipynb")),
             root / "notebooks" / "i18n" / "ja.yaml", root / "ftlib" / "course.py"]
    return [path for path in files if path.exists()]


def badges(repo: str, ref: str, root: Path = ROOT) -> list[Path]:
    """Point every badge, setup cell and README link under `root` at github.com/`repo` at `ref` (an instructor's
    fork), REPO and REF in this module included, and rebuild the Japanese notebooks. Returns the files changed."""
    import nbformat

    from ftlib import i18n

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or not re.fullmatch(r"[\w.-]+", ref):
        raise SystemExit(f"--repo must be OWNER/NAME and --ref a tag or branch name, not {repo!r} and {ref!r}")
    changed = []
    for path in course_files(root):
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            before = [cell.source for cell in nb.cells]
            for cell in nb.cells:
                cell.source = point_to(cell.source, repo, ref)
            if [cell.source for cell in nb.cells] != before:
                nbformat.write(nb, path)
                changed.append(path)
            continue
        text = path.read_text(encoding="utf-8")
        new = HERE.sub(lambda m: f'{m["name"]} = "{repo if m["name"] == "REPO" else ref}"', text) \
            if path.name == "course.py" else point_to(text, repo, ref)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    notebooks = root / "notebooks"
    i18n.build(notebooks, notebooks / "i18n" / "ja.yaml", notebooks / "ja")
    return changed


def main(argv: list[str] | None = None) -> int:
    """The command line: `python -m ftlib.course run ...`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m ftlib.course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("run", help="execute the notebooks in order")
    cmd.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers, e.g. --only 00 03")
    cmd.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="papermill parameter for every notebook, e.g. -p MAX_STEPS=5 -p LANG=ja")
    cmd.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    cmd.add_argument("--build", type=Path, default=ROOT / "build")
    cmd.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    cmd.add_argument("--gpu-report", action="store_true",
                     help="on a GPU: write the measured rows (seconds, peak GPU memory, 03's headline) into "
                          "bench/README.md")
    planned = sub.add_parser("plan", help="every notebook step's estimated memory on a machine, and whether it fits")
    planned.add_argument("--gpu", default="t4", choices=["t4", "l4", "a100", "cpu"])
    planned.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                         help="a notebook parameter for every notebook, e.g. -p LANG=ja")
    fork = sub.add_parser("badges", help="point every badge, setup cell and README link at a fork")
    fork.add_argument("--repo", required=True, metavar="OWNER/NAME")
    fork.add_argument("--ref", default=REF, help=f"a tag or branch (default {REF})")
    args = parser.parse_args(argv)
    if args.command == "plan":
        from ftlib import plan

        steps = plan.plan(args.gpu, parse_parameters(args.parameter))
        machine = plan.MACHINES[args.gpu]
        print(f"{machine.name}: {machine.gib:g} GiB usable, {str(machine.dtype).removeprefix('torch.')}; estimates "
              "from each model's config (notebook 02 compares them with measurements)")
        print(plan.frame(steps).to_string(index=False))
        over = [s for s in steps if not s.fits]
        print(f"{len(over)} step(s) do not fit" if over else f"every step fits on the {machine.name}")
        for s in over:
            print(f"  does not fit: {s.notebook} {s.step} ({s.bytes / plan.GIB:.1f} GiB)")
        return 1 if over else 0
    if args.command == "badges":
        for path in badges(args.repo, args.ref):
            print(f"rewrote {path.relative_to(ROOT)}")
        print(f"every badge and setup cell now installs github.com/{args.repo} at {args.ref}")
        return 0
    if args.command == "run" and args.gpu_report and env.device() != "cuda":
        print("--gpu-report measures the course on a GPU, and this machine has none (torch.cuda.is_available() is "
              "False): run it on Colab, Kaggle or any CUDA machine.", file=sys.stderr)
        return 2
    results = run(args.only, parse_parameters(args.parameter), args.notebooks, args.build, args.timeout)
    if args.gpu_report:
        import torch

        saved = args.build / "course_results.json"
        headline = json.loads(saved.read_text(encoding="utf-8")).get("03", {}) if saved.exists() else {}
        print(gpu_report(results, headline, torch.cuda.get_device_name(0), parse_parameters(args.parameter)))
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"FAILED {r.notebook}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
