"""What dooms a run stops it early, with one line and the right exit code (real `mmat generate`, a
local OpenAI-compatible server counting every chat request).

- a key the endpoint rejects: exit 2 before any chat request; a 401/403/exhausted quota met mid-run:
  exit 2 at the first one, no further request, no sample quarantined, and the rerun finishes them;
- every sample failing: exit 3 even with the default quarantine rate;
- `--out` a file or read-only: exit 2 before any teacher call; a full disk: one line, exit 1, and a
  clean resume;
- config: `backend: off` works as YAML reads it; `sources: []` and `--limit -3` are one-line errors.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.openai_server import OpenAICompatServer, error, ok
from tests.runner_support import (error_output, FORMATS, SAMPLES, default_work_dir, inspect_folder, mmat, mmat_env,
                                  read_quarantine, source, source_ids, write_config)

KEY = "sk-test-wrong-or-right-0000000"


def _openai(server: OpenAICompatServer, concurrency: int = 1) -> dict:
    return dict(teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url, "max_retries": 0},
                runner={"max_concurrency": concurrency})


def _lines(text: str) -> list[str]:
    return error_output(text)


def test_a_rejected_key_stops_the_run_before_any_paid_call(tmp_path):
    with OpenAICompatServer(expected_key="sk-the-right-key-0000000000") as server:
        config = write_config(tmp_path / "c.yaml", [source("tabmwp")], **_openai(server, concurrency=8))
        result = mmat("generate", "--config", config, "--out", tmp_path / "out", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY))
        assert server.count() == 0  # not one chat completion was paid for
    assert result.returncode == 2, result.stderr
    [line] = _lines(result.stderr)
    assert "HTTP 401" in line and "set OPENAI_API_KEY to a valid key" in line and "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout
    assert read_quarantine(default_work_dir(tmp_path / "out")) == {}


@pytest.mark.parametrize("reply,says", [
    (error(401, "Incorrect API key provided"), "HTTP 401"),
    (error(403, "Project does not have access to model"), "HTTP 403"),
    (error(429, "You exceeded your current quota", code="insufficient_quota"), "add credit"),
])
def test_a_fatal_teacher_error_mid_run_stops_at_the_first_one_and_the_rerun_resumes(tmp_path, reply, says):
    with OpenAICompatServer() as server:
        server.defaults["rationale_step"] = reply  # /models answers: the key is only refused per call
        config = write_config(tmp_path / "c.yaml", [source("tabmwp")], **_openai(server))
        out = tmp_path / "out"
        result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY))
        assert server.count() == 1  # the first refusal ended the run: no further request
        assert result.returncode == 2, result.stderr
        [line] = _lines(result.stderr)
        assert says in line and "The run stopped at the first such error" in line and "Traceback" not in line
        assert read_quarantine(default_work_dir(out)) == {}  # not the samples' fault: none quarantined
        del server.defaults["rationale_step"]  # fixed (a new key, more credit): rerun the same command
        again = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path,
                     env=mmat_env(OPENAI_API_KEY=KEY))
    assert again.returncode == 0, again.stderr
    samples, _ = source_ids(config)
    assert inspect_folder(out).id_set() == samples


def test_a_run_where_every_sample_fails_exits_3(tmp_path):
    with OpenAICompatServer() as server:
        server.defaults["final_answer"] = ok("no json here")
        config = write_config(tmp_path / "c.yaml", [source("tabmwp", limit=4)], **_openai(server, concurrency=4))
        result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--quiet", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY))
    assert result.returncode == 3, result.stderr
    assert "every sample failed (4 of 4 quarantined)" in result.stderr and "Traceback" not in result.stderr


def test_out_that_is_a_file_is_refused_before_any_teacher_call(tmp_path):
    not_a_folder = tmp_path / "out"
    not_a_folder.write_text("a file")
    with OpenAICompatServer() as server:
        config = write_config(tmp_path / "c.yaml", [source("tabmwp")], **_openai(server))
        result = mmat("generate", "--config", config, "--out", not_a_folder, cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY))
        assert server.count() == 0
    assert result.returncode == 2, result.stderr
    [line] = _lines(result.stderr)
    assert f"{not_a_folder} is a file, not a folder" in line
    assert not_a_folder.read_text() == "a file"


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def test_read_only_out_is_refused_before_any_teacher_call(tmp_path):
    ro = tmp_path / "ro"
    if not _mount_tmpfs(ro, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        with OpenAICompatServer() as server:
            config = write_config(tmp_path / "c.yaml", [source("tabmwp")], **_openai(server))
            result = mmat("generate", "--config", config, "--out", ro / "out", cwd=tmp_path,
                          env=mmat_env(OPENAI_API_KEY=KEY))
            assert server.count() == 0
    finally:
        _umount(ro)
    assert result.returncode == 2, result.stderr
    [line] = _lines(result.stderr)
    assert "cannot write to the dataset folder (--out)" in line and "Read-only file system" in line


@pytest.mark.slow
def test_a_full_disk_mid_run_is_one_line_and_the_rerun_resumes_cleanly(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=400k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        config = write_config(tmp_path / "c.yaml", [source("tabmwp"), source("infoseek", limit=4)])
        out = disk / "out"
        full = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
        again = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path)
        state = inspect_folder(out)
    finally:
        _umount(disk)
    assert full.returncode == 1, full.stderr[-2000:]
    assert "Traceback" not in full.stderr and "Logging error" not in full.stderr, full.stderr[-3000:]
    [line] = _lines(full.stderr)
    assert "No space left on device" in line and "rerun the same command to resume" in line
    assert again.returncode == 0, again.stderr[-2000:]
    samples, _ = source_ids(config)
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [] and state.id_set(fmt) == samples
    assert state.card_mismatches == [] and state.unreadable == []


def test_off_on_yes_no_backends_work_however_yaml_reads_them(tmp_path):
    config = tmp_path / "switches.yaml"
    config.write_text(f"sources:\n  - {{kind: tabmwp, path: {SAMPLES / 'tabmwp'}, limit: 2}}\n"
                      "operators:\n  ocr: {backend: off}\n  face_detection: {backend: no}\n"
                      "  label_bbox: {backend: 'off'}\n  rag: {backend: false}\n  image_caption: {backend: template}\n")
    result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "operators available: image_caption" in result.stdout
    for name in ("ocr", "face_detection", "label_bbox", "rag"):
        assert f"operator unavailable: {name}: disabled in config (operators.{name}.backend: off)" in result.stdout


@pytest.mark.parametrize("yaml_text,args,says", [
    ("sources: []\n", (), "'sources' is empty"),
    (f"sources:\n  - {{kind: tabmwp, path: {SAMPLES / 'tabmwp'}}}\n", ("--limit", "-3"), "--limit must be 0 or more"),
])
def test_empty_sources_and_a_negative_limit_are_one_line_errors(tmp_path, yaml_text, args, says):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    result = mmat("generate", "--config", config, "--out", tmp_path / "out", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = _lines(result.stderr)
    assert says in line
    assert not (tmp_path / "out").exists()


def test_the_ray_driver_stops_on_an_actors_fatal_teacher_error():
    from generation.sample_worker import outcome as _outcome
    from generation.teachers.base import TeacherFatalError

    with pytest.raises(TeacherFatalError) as err:  # an actor's outcome, as the streamed Ray engine returns it
        _outcome({"id": "tabmwp/x/1", "fatal": "teacher quota exhausted (HTTP 429 insufficient_quota)",
                  "fix": "add credit to the account or use another key"})
    assert str(err.value).startswith("teacher quota exhausted (HTTP 429 insufficient_quota). The run stopped at the "
                                     "first such error: add credit to the account or use another key, then rerun")
