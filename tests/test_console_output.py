"""What a user meets on the console (issue 32): JSON Lines from `mmat show`, `--version`, an ETA that
agrees with the rate beside it, the trainer's Python API and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from generation.progress import RunProgress, format_eta, progress_fields
from generation.schema import ENGINE_VERSION, TeacherUsage
from tests.dataset_factory import make_dataset_folder


def _mmat(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmat_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_eta_is_the_remaining_samples_at_the_rate_the_line_shows():
    # the case: 15 of 40 at 0.26 samples/s is 96 s left, not 5
    fields = progress_fields(15, 40, 15 / 0.26, TeacherUsage())
    assert fields["samples_per_s"] == pytest.approx(0.26, abs=1e-3)
    assert fields["eta_s"] == pytest.approx(25 / 0.26, abs=0.5)
    assert format_eta(fields["eta_s"]) == "0:01:36"
    assert format_eta(None) == "-:--:--"
    assert format_eta(3725.4) == "1:02:05"


def test_the_progress_line_shows_the_eta_of_its_own_rate(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("generation.progress.time.perf_counter", lambda: now[0])
    progress = RunProgress(total=40, quiet=False, log_every_s=1e9)
    progress.done = 14
    now[0] += 57.7
    progress.advance(TeacherUsage())  # 15 done after 57.7 s: 0.26/s, 25 left
    task = progress.progress.tasks[0]
    assert task.fields["rate"] == "0.26 samples/s"
    assert task.fields["eta"] == format_eta(25 / (15 / 57.7)) == "0:01:36"
    progress.set_waiting("the provider asked to wait 30 s (HTTP 429)")
    assert "429" in progress.progress.tasks[0].fields["waiting"]


def test_version_flag_prints_the_engine_version():
    result = _mmat("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mmat {ENGINE_VERSION}"


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    return make_dataset_folder(tmp_path_factory.mktemp("show"), n_rows_per_source=2, card=True)


def test_show_writes_json_lines_and_pretty_only_on_request(small_folder):
    result = _mmat("show", small_folder, "--config", "orr", "--n", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # one document per line: jq -c and json.loads per line work
    rows = [json.loads(line) for line in lines]
    assert all(row["format"] == "orr" and row["images"][0].startswith("<image ") for row in rows)
    pretty = _mmat("show", small_folder, "--config", "orr", "--n", "1", "--pretty")
    assert pretty.returncode == 0, pretty.stderr
    assert len(pretty.stdout.splitlines()) > 5 and json.loads(pretty.stdout)["id"] == rows[0]["id"]


def test_trainer_api_gives_functions_even_after_its_modules_are_imported():
    code = ("import trainer.exporting, trainer.lora\n"
            "from trainer import export, train\n"
            "import inspect\n"
            "assert inspect.isfunction(export) and inspect.isfunction(train), (export, train)\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.slow
def test_train_with_a_model_that_cannot_load_is_one_line(small_folder, tmp_path):
    result = _mmat("train", "--data", small_folder, "--config", "orr", "--model", tmp_path / "no-such-model",
                   "--max-steps", "1", "--output", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cannot load the model" in lines[0] and "python -m trainer.tiny_vlm" in lines[0]


def test_the_eval_table_stays_whole_in_an_80_column_pipe():
    import io

    from rich.console import Console

    from agent.eval_report import summarise
    from agent.render import print_report

    sources = ["tabmwp", "cauldron", "infoseek", "visual_cot", "llava_cot"]
    records = [{"model": "tuned", "format": fmt, "id": str(i), "source": sources[i % 5], "status": "answered",
                "correct": i % 2 == 0, "tool_calls": 1, "turns": 2, "latency_s": 0.5}
               for fmt in ("plain", "orr", "rr") for i in range(10)]
    report = summarise(records, ["plain", "orr", "rr"], "tuned", "mmat-1m")
    out = io.StringIO()
    print_report(report, Console(file=out, width=80))  # what a pipe or a CI log gets
    text = out.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for label in ("accuracy", "latency vs plain", "not answered", *(f"accuracy: {s}" for s in sources)):
        assert label in text, label


@pytest.mark.slow
def test_a_run_prints_no_third_party_bar_banner_or_foreign_log_format(tmp_path):
    """PaddleOCR, the local RAG model and deepface load during the run: none of them may print a bar
    ("Loading weights"), a banner ("Directory ... has been created") or make mmat's own records appear
    in Paddle's log format ("[2026-...] [    INFO] progress.py:...")."""
    from tests.runner_support import mmat, mmat_env, source, write_config

    config = write_config(tmp_path / "c.yaml", [source("infoseek", limit=2), source("tabmwp", limit=2),
                                                source("cauldron", limit=2)],
                          ocr="auto", rag="local", face="auto")
    env = mmat_env(DEEPFACE_HOME=str(tmp_path / "fresh-deepface"))  # deepface announces a folder it creates
    env.pop("TQDM_DISABLE", None)
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    result = mmat("generate", "--config", config, "--out", tmp_path / "out", cwd=tmp_path, env=env, timeout=900)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    both = result.stdout + result.stderr
    for noise in ("Loading weights", "it/s]", "has been created", "] [    INFO]", "Creating model"):
        assert noise not in both, (noise, both[-3000:])


@pytest.mark.slow
def test_train_summary_adds_up_and_prints_no_library_warnings(small_folder, tmp_path):
    import re

    from trainer.tiny_vlm import shared_tiny_vlm

    result = _mmat("train", "--data", small_folder, "--config", "orr", "--model", shared_tiny_vlm(),
                   "--max-steps", "2", "--frobenius-lambda", "100", "--output", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    both = result.stdout + result.stderr
    for warning in ("pin_memory", "is_gradient_checkpointing", "use_cache", "Warning"):
        assert warning not in both, (warning, both[-3000:])
    summary = re.search(r"trained 2 steps: mean loss ([\d.]+); last logged step: loss ([\d.]+) = ce ([\d.]+) "
                        r"\+ frobenius ([\d.e+-]+);", result.stdout)
    assert summary, result.stdout[-2000:]
    mean, loss, ce, frob = map(float, summary.groups())
    assert frob >= 0 and loss == pytest.approx(ce + frob, abs=1e-3) and mean > 0  # the step's loss: its two terms


def test_the_audit_tables_stay_whole_in_an_80_column_pipe(small_folder):
    import io

    from rich.console import Console

    from generation.quality.audit import audit_dataset
    from generation.quality.report import print_report

    report = audit_dataset(small_folder, "rr")
    out = io.StringIO()
    print_report(report, Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    table_lines = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert table_lines and max(len(line) for line in table_lines) <= 80
    names = [line.split("│")[1].strip() for line in table_lines if line.startswith("│")]
    for source in report.sources():  # a source row and its subsets' rows, each name whole on its line
        assert source in names
        for key in report.subsets(source):
            assert key.split("/", 1)[1] in names, (key, names)
    headers = " ".join(line for line in lines if line.startswith("┃"))
    for header in ("verified", "grounded (tool)", "general", "math dialogues repaired", "tokens", "images"):
        assert header in headers, header
