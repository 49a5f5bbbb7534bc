"""`mmat generate` as a user and a script see it: the dry-run plan, one-line config errors, the progress
bar (and `--quiet`), the structured run log, and `--num-shards` workers writing one folder."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.runner_support import (FORMATS, default_work_dir, inspect_folder, load_ids, mmat, mmat_cmd, mmat_env,
                                  source, source_ids, write_config)


@pytest.fixture()
def small(tmp_path):
    config = write_config(tmp_path / "small.yaml", [source("tabmwp"), source("infoseek", limit=6),
                                                    source("cauldron", limit=6)])
    return config, tmp_path / "out"


def test_dry_run_prints_the_plan_and_writes_nothing(small, tmp_path):
    config, out = small
    result = mmat("generate", "--config", config, "--out", out, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "samples: 24 in this slice, 0 done before, 24 to run" in text
    assert "to run per source: cauldron=6, infoseek=6, tabmwp=12" in text
    assert "operators available: image_caption" in text
    assert "operator unavailable: ocr" in text
    assert "teacher: offline (offline-annotations)" in text
    assert "estimated teacher calls: up to" in text and "estimated cost: up to $0.00" in text
    assert not out.exists()
    assert not default_work_dir(out).exists()


def test_dry_run_estimates_calls_and_cost_for_a_paid_teacher(tmp_path):
    config = write_config(tmp_path / "paid.yaml", [source("tabmwp", limit=4)],
                          teacher={"kind": "openai", "model": "gpt-4o", "prices": {"prompt_per_1m": 2.5,
                                                                                   "completion_per_1m": 10.0}})
    result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # 4 questions x (5 steps + 2 reflections + 1 final answer) = 32 calls at ~1600+250 tokens
    assert "estimated teacher calls: up to 32 (4 questions x 8)" in result.stdout
    assert "estimated cost: up to $0.21" in result.stdout
    assert "teacher: openai (gpt-4o)" in result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("yaml_text,key,allowed", [
    ("runner:\n  max_concurency: 4\n", "runner.max_concurency", None),
    ("teacher:\n  kind: anthropic\n", "teacher.kind", "'offline', 'openai' or 'llamacpp'"),
    ("output:\n  validation_fraction: 2\n", "output.validation_fraction", "less than or equal to 1"),
])
def test_bad_config_is_one_line_on_stderr_naming_the_key(tmp_path, yaml_text, key, allowed):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sources:\n  - {{kind: tabmwp, path: {source('tabmwp')['path']}}}\n{yaml_text}")
    result = mmat("generate", "--config", bad, "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr
    if allowed:
        assert allowed in lines[0]
    assert not (tmp_path / "out").exists()


def test_progress_bar_shows_rate_eta_tokens_and_usd_and_the_log_file_is_structured(small, tmp_path):
    config, out = small
    result = mmat("generate", "--config", config, "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the bar is on stderr (stdout carries data and the summary)
    bar = next(line for line in result.stderr.splitlines() if line.startswith("generate"))
    assert "24/24" in bar and "samples/s" in bar and "ETA 0:00:00" in bar and "tok" in bar and "$" in bar
    assert not any(line.startswith("generate") for line in result.stdout.splitlines())
    records = [json.loads(line) for line in (default_work_dir(out) / "run.log").read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    progress = [r for r in records if r["logger"] == "mmat.progress" and r["message"].startswith("progress")]
    assert progress and progress[-1]["data"]["done"] == 24
    assert {"samples_per_s", "eta_s", "tokens", "cost_usd"} <= set(progress[-1]["data"])
    summary = next(r for r in records if r["message"] == "run finished")
    assert summary["data"]["finished"] == 24 and summary["data"]["exit_code"] == 0


def test_quiet_prints_no_progress_bar_and_no_summary(small, tmp_path):
    config, out = small
    result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    assert "samples/s" not in both and "━" not in both and "INFO" not in both
    assert result.stdout.strip() == ""
    assert inspect_folder(out).id_set() == source_ids(config)[0]


def test_two_shard_workers_write_disjoint_outputs_that_merge_into_one_folder(small, tmp_path):
    config, out = small
    expected, _ = source_ids(config)
    workers = [subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet",
                                         "--num-shards", "2", "--shard-index", str(i)),
                                cwd=tmp_path, env=mmat_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    work = default_work_dir(out)
    per_worker = [{json.loads(line)["id"] for line in (work / f"rows-{i:05d}-of-00002.jsonl").read_text().splitlines()}
                  for i in range(2)]
    assert per_worker[0] and per_worker[1] and not per_worker[0] & per_worker[1]
    assert per_worker[0] | per_worker[1] == expected
    state = inspect_folder(out)
    assert state.card_mismatches == []  # the card describes both workers' shards
    names = {p.name for p in state.shards}
    assert any("-00000-of-00002" in n for n in names) and any("-00001-of-00002" in n for n in names)
    for fmt in FORMATS:
        assert state.id_set(fmt) == expected and not state.duplicates(fmt)
        assert sorted(load_ids(out, fmt)) == sorted(expected)
    # the split by id is deterministic: a worker rerun has nothing to do
    again = mmat("generate", "--config", config, "--out", out, "--num-shards", "2", "--shard-index", "1",
                 cwd=tmp_path)
    assert again.returncode == 0 and "samples: 0 finished, 0 quarantined" in again.stdout
    assert f"done before (of {len(per_worker[1])})" in again.stdout


@pytest.mark.parametrize("command", ["generate", "retry"])
def test_ctrl_c_says_how_to_resume_and_exits_130(small, monkeypatch, command):
    from typer.testing import CliRunner

    import generation.runner
    from mmat_cli import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generation.runner, "run_generation", interrupted)
    config, out = small
    result = CliRunner().invoke(app, [command, "--config", str(config), "--out", str(out)])
    assert result.exit_code == 130
    assert "interrupted: finished samples are saved; rerun the same command to resume" in result.output


def test_a_bug_shows_its_traceback_with_secrets_masked_and_exits_1(small, monkeypatch):
    from typer.testing import CliRunner

    import generation.runner
    from mmat_cli import app

    secret = "sk-planted-secret-key-1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    def buggy(*args, **kwargs):
        raise RuntimeError(f"boom with {secret}")

    monkeypatch.setattr(generation.runner, "run_generation", buggy)
    config, out = small
    result = CliRunner().invoke(app, ["generate", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom with" in result.output
    assert "Traceback" in result.output and "buggy" in result.output
    assert secret not in result.output
