"""The course runner, and the course itself: every notebook executes top to bottom."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ftlib import course

# Smoke parameters: short generations and a few training steps, so that the whole course fits in CI's time.
SMOKE = {"MAX_NEW_TOKENS": 16, "STEPS": 1, "MAX_STEPS": 2, "NUM_TRAIN_EPOCHS": 1, "EVAL_STEPS": 2, "N_EVAL": 4,
         "OVERFIT_STEPS": 4,
         "N_GENERAL": 4, "SPEED_PROMPTS": 4, "SPEED_TOKENS": 4, "ENCODER_STEPS": 2}


def make_notebook(path, *sources):
    cells = [new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_parse_parameters():
    assert course.parse_parameters(["MAX_STEPS=5", "LANG=ja", "LR=1e-3", "FLAG=True"]) == \
        {"MAX_STEPS": 5, "LANG": "ja", "LR": 1e-3, "FLAG": True}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        course.parse_parameters(["oops"])


def test_notebooks_are_found_in_order_and_filtered(tmp_path):
    for name in ["01_b.ipynb", "00_a.ipynb", "10_c.ipynb", "notes.ipynb"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in course.notebooks(tmp_path)] == ["00_a.ipynb", "01_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in course.notebooks(tmp_path, ["10"])] == ["10_c.ipynb"]


def test_runner_fails_naming_the_notebook_and_cell(tmp_path, capsys):
    make_notebook(tmp_path / "00_good.ipynb", "X = 1", "print('reply', X)")
    make_notebook(tmp_path / "01_broken.ipynb", "X = 1", "y = 2", "raise ValueError('planted failure')")
    build = tmp_path / "build"
    code = course.main(["run", "--notebooks", str(tmp_path), "--build", str(build), "-p", "X=5"])
    assert code == 1
    report = (build / "course_report.md").read_text()
    assert "| 00_good.ipynb | ok |" in report and "| 01_broken.ipynb | failed |" in report
    assert "01_broken.ipynb: cell 3" in report and "planted failure" in report
    assert "FAILED 01_broken.ipynb: cell 3" in capsys.readouterr().err
    executed = nbformat.read(build / "00_good.ipynb", as_version=4)
    assert "reply 5" in executed.cells[-1].outputs[0]["text"]  # the parameter reached the notebook


def test_show_tagged_cells_are_echoed(tmp_path, capsys):
    make_notebook(tmp_path / "00_show.ipynb", "X = 1", "print('hidden')", "print('the model says hi')")
    nb = nbformat.read(tmp_path / "00_show.ipynb", as_version=4)
    nb.cells[2].metadata["tags"] = ["show"]
    nbformat.write(nb, tmp_path / "00_show.ipynb")
    assert course.main(["run", "--notebooks", str(tmp_path), "--build", str(tmp_path / "build")]) == 0
    out = capsys.readouterr().out
    assert "the model says hi" in out and "hidden" not in out


def test_record_keeps_each_notebooks_measurements_with_their_intervals(tmp_path, monkeypatch):
    from ftlib import metrics

    monkeypatch.setenv(course.RESULTS, str(tmp_path / "course_results.json"))
    course.record("03", lang="en", fact_hit_before=metrics.wilson(0, 60), fact_hit_after=metrics.wilson(42, 60))
    course.record("05", verdict="not distinguishable at this n")
    course.record("03", lang="ja")  # a later record adds to, and overwrites within, the notebook's entry
    saved = json.loads((tmp_path / "course_results.json").read_text())
    assert saved["03"]["lang"] == "ja" and saved["05"] == {"verdict": "not distinguishable at this n"}
    assert saved["03"]["fact_hit_after"] == {"value": 0.7, "low": pytest.approx(0.574, abs=1e-3),
                                             "high": pytest.approx(0.801, abs=1e-3), "n": 60}


@pytest.mark.slow
def test_every_course_notebook_executes(tmp_path):
    results = course.run(parameters=SMOKE, build=tmp_path)
    assert results and all(r.status == "ok" for r in results), [r.error for r in results if r.error]
    assert {r.notebook for r in results} == {p.name for p in course.notebooks()}
    assert (tmp_path / "course_report.md").exists()
    headline = json.loads((tmp_path / "course_results.json").read_text())["03"]
    for key in ("fact_hit_before", "fact_hit_after"):
        assert headline[key].keys() == {"value", "low", "high", "n"}
        assert 0 <= headline[key]["low"] <= headline[key]["value"] <= headline[key]["high"] <= 1


@pytest.mark.slow
def test_notebook_00_runs_the_japanese_track(tmp_path, capsys):
    results = course.run(only=["00"], parameters={**SMOKE, "LANG": "ja"}, build=tmp_path)
    assert results[0].status == "ok", results[0].error
    assert "日本の首都" in capsys.readouterr().out  # the Japanese question reached the model and was echoed


@pytest.mark.slow
def test_training_notebooks_run_on_a_users_file(tmp_path):
    """DATA points notebooks 03-07 at a user's file: they train and evaluate on it (text or fact metrics), and
    notebook 06 classifies with the user's own labels."""
    example = "../data/example/library_faq_en.csv"  # notebooks run in notebooks/
    qa = {"DATA": example, "PROMPT_COLUMN": "question", "COMPLETION_COLUMN": "answer", "FACTS_COLUMN": "facts"}
    results = course.run(only=["03", "04", "05", "07"], parameters={**SMOKE, **qa}, build=tmp_path / "qa")
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.error]
    labelled = tmp_path / "tickets.csv"
    rows = [(f"{kind} question number {i}: {word}", kind) for kind, word in
            [("billing", "invoice charge"), ("bug", "crash error"), ("praise", "thanks great")] for i in range(20)]
    labelled.write_text("message,category\n" + "\n".join(f"{t},{k}" for t, k in rows) + "\n", encoding="utf-8")
    results = course.run(only=["06"], parameters={**SMOKE, "DATA": str(labelled), "TEXT_COLUMN": "message",
                                                   "LABEL_COLUMN": "category"}, build=tmp_path / "labels")
    assert results[0].status == "ok", results[0].error


def test_the_gpu_report_writes_its_rows_into_bench_readme_once(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n| a | b |\n")
    results = [course.Result("00_setup_and_first_chat.ipynb", "ok", 61.2, 900.0, "", 3900.0),
               course.Result("03_qlora_training.ipynb", "ok", 601.0, 1500.0, "", 7300.0)]
    headline = {"lang": "en", "model": "smollm2-1.7b", "fact_hit_before": {"value": 0.05, "low": 0.01, "high": 0.13,
                "n": 64}, "fact_hit_after": {"value": 0.7, "low": 0.58, "high": 0.8, "n": 64}}
    course.gpu_report(results, headline, "Tesla T4", path=readme)
    course.gpu_report(results, headline, "Tesla T4", path=readme)  # a second run replaces the first
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\n| a | b |") and text.count(course.GPU_REPORT[0]) == 1
    assert "| 03_qlora_training.ipynb | ok | 601 | 7.1 |" in text and "| total | | 662 | |" in text
    assert "smollm2-1.7b, en): fact hit rate on trained facts 0.05 [0.01, 0.13] -> 0.70 [0.58, 0.80], n=64" in text


def test_the_gpu_report_needs_a_gpu(capsys):
    if course.env.device() == "cuda":
        pytest.skip("this machine has a GPU")
    assert course.main(["run", "--gpu-report", "--only", "00"]) == 2
    assert "this machine has none" in capsys.readouterr().err
