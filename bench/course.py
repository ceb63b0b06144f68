"""The whole course (P3): `make course` wall time and each notebook's time on this machine, at the defaults.

Run: .venv/bin/python bench/course.py [--only 03 04] [--build DIR] [-p LANG=ja]

Targets (issue 9): the course <= 15 min in all and each notebook <= 4 min on a 2-core CPU. Runs `make course`
(every notebook top to bottom, offline, on the embedded default model) into a temporary build folder and
reads the per-notebook seconds from its course_report.md. Then the total as a share of the 15-minute budget
(the notebooks' own timings are in the table above it), and notebook 03's headline from course_results.json.
"""

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S, EACH_S = 15 * 60, 4 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="notebook numbers, e.g. --only 03 04 (default: all)")
    parser.add_argument("--build", help="keep the executed notebooks here (default: a temporary folder)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="a notebook parameter for every notebook, e.g. -p LANG=ja (the Japanese track)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        build = args.build or temporary
        course_args = f"--build {build}" + (f" --only {' '.join(args.only)}" if args.only else "") + "".join(
            f" -p {parameter}" for parameter in args.parameter)
        start = time.perf_counter()
        done = subprocess.run(["make", "-C", str(ROOT), "course", f"ARGS={course_args}"], capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        report = Path(build, "course_report.md").read_text() if Path(build, "course_report.md").exists() else ""
        results_file = Path(build, "course_results.json")
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
    rows = re.findall(r"^\| (\S+\.ipynb) \| (\w+) \| (\d+) \| (\d+) \|$", report, flags=re.M)
    if done.returncode or not rows:
        raise SystemExit(f"make course failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print("| notebook | status | seconds | peak memory (MiB) | within 4 min |")
    print("|---|---|---:|---:|---|")
    for name, status, seconds, peak in rows:
        print(f"| {name} | {status} | {seconds} | {peak} | {'yes' if int(seconds) <= EACH_S else 'NO'} |")
    slowest = max(rows, key=lambda row: int(row[2]))
    print(f"make course wall time {wall / 60:.1f} min (target <= 15), notebooks {sum(int(r[2]) for r in rows)} s; "
          f"slowest {slowest[0]} {int(slowest[2]) / 60:.1f} min (target <= 4)")
    print(f"make course: {wall / BUDGET_S:.2f} of the 15-minute budget ({wall / 60:.1f} min)")
    headline = results.get("03", {})
    if {"fact_hit_before", "fact_hit_after"} <= headline.keys():  # issue 14: after.low > before.high
        before, after = headline["fact_hit_before"], headline["fact_hit_after"]
        print(f"notebook 03 ({headline.get('lang')}): fact hit rate on trained facts {before['value']:.2f} "
              f"[{before['low']:.2f}, {before['high']:.2f}] -> {after['value']:.2f} [{after['low']:.2f}, "
              f"{after['high']:.2f}], n={after['n']}; intervals apart: {after['low'] > before['high']}")


if __name__ == "__main__":
    main()
