"""Secrets never leave, and a push publishes only a folder nobody is rewriting and whose card tells
the truth (`mmat push` against the project's Hub-compatible server).

- a push message holding an API key and a Hub token reaches neither the card, nor any object the Hub
  stored (commits, tags, files), nor the console;
- a base URL with `user:password@` is printed without the credentials (`--dry-run`);
- a push waits, saying so, while the dataset folder's lock is held (a running `mmat generate`), and
  publishes once it is free;
- a folder whose shards hold fewer rows than its card says (a group deleted by hand) is refused.
"""
from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from generation.folder_lock import out_lock_path
from publishing.push import PushError, push_dataset
from tests.dataset_factory import make_dataset_folder
from tests.runner_support import REPO, mmat, mmat_cmd, mmat_env, source, write_config

REPO_ID = "tester/mmat-1m"
PLANTED_KEY = "sk-proj-PLANTEDmessageKEY0123456789"


def _push_cmd(folder, tag: str, *extra: str) -> list[str]:
    return mmat_cmd("push", folder, "--repo", REPO_ID, "--tag", tag, *extra)


def _client_env(hub_server, tmp_path) -> dict:
    env = hub_server.client_env(tmp_path / "client")
    env["PYTHONPATH"] = str(REPO)
    env["OPENAI_API_KEY"] = PLANTED_KEY  # a known secret of this process, as in a real session
    return env


def test_a_push_message_with_secrets_reaches_neither_the_card_nor_the_hub_nor_the_console(hub_server, tmp_path):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp"], card=True)
    message = (f"Release for the team; the key is {PLANTED_KEY}, token {hub_server.token}, "
               f"mirror https://bob:hunter2pass@mirror.example/x")
    result = subprocess.run(_push_cmd(folder, "v1.0.0", "-m", message), env=_client_env(hub_server, tmp_path),
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    needles = [PLANTED_KEY, "PLANTEDmessageKEY", hub_server.token, "hunter2pass"]
    card = (folder / "README.md").read_text()
    stored = {p: p.read_bytes() for p in (tmp_path / "hub").rglob("*") if p.is_file()}
    leaks = [f"card: {n}" for n in needles if n in card]
    leaks += [f"stdout/stderr: {n}" for n in needles if n in result.stdout + result.stderr]
    leaks += [f"hub {p.name}: {n}" for p, data in stored.items() for n in needles if n.encode() in data]
    assert leaks == []
    [commit] = [c for c in HfApi().list_repo_commits(REPO_ID, repo_type="dataset") if c.title.startswith("Release")]
    assert commit.title == "Release for the team; the key is ***, token ***, mirror https://***@mirror.example/x"
    assert "the key is ***" in card  # the changelog line, redacted


def test_a_base_url_with_credentials_is_printed_without_them(tmp_path):
    config = write_config(tmp_path / "c.yaml", [source("tabmwp", limit=2)], teacher={"kind": "openai"})
    result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--dry-run", "--base-url",
                  "http://alice:S3cretPassw0rd@127.0.0.1:9/v1", cwd=tmp_path,
                  env=mmat_env(OPENAI_API_KEY="sk-test-dry-run-000000000"))
    assert result.returncode == 0, result.stderr
    assert "S3cretPassw0rd" not in result.stdout + result.stderr and "alice" not in result.stdout
    assert "http://***@127.0.0.1:9/v1" in result.stdout


def test_a_push_waits_while_the_folder_is_being_written(hub_server, tmp_path):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"], card=True)
    lock = out_lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what `mmat generate` holds while it rewrites shards and card
    proc = subprocess.Popen(_push_cmd(folder, "v1.0.0"), env=_client_env(hub_server, tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        said = ""
        while "waiting" not in said:  # blocks until the push says it waits (or exits)
            line = proc.stderr.readline()
            assert line, f"the push ended without waiting: {said}"
            said += line
        assert "is being written by another mmat process" in said
        assert proc.poll() is None
        assert [m for m, path in hub_server.requests if "/commit/" in path] == []  # nothing published meanwhile
    finally:
        os.close(fd)  # the generation finished
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "v1.0.0" in [t.name for t in HfApi().list_repo_refs(REPO_ID, repo_type="dataset").tags]


def test_a_push_gives_up_on_a_folder_that_stays_locked(hub_server, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"], card=True)
    lock = out_lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(PushError, match="is being written by another mmat process"):
            push_dataset(folder, REPO_ID, "v1.0.0", lock_timeout_s=0.5)
    finally:
        os.close(fd)


def test_a_folder_whose_card_promises_rows_its_shards_lack_is_refused(hub_server, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp", "infoseek"], card=True)
    for shard in (folder / "data/rr/infoseek").glob("train-*.parquet"):
        shard.unlink()  # a group deleted by hand
    with pytest.raises(PushError) as err:
        push_dataset(folder, REPO_ID, "v1.0.0")
    message = str(err.value)
    assert "fewer rows than its card says" in message and "rr-infoseek/train: card 2 rows, shards 0" in message
    assert "\n" not in message
    assert hub_server.requests == []  # refused before the Hub was contacted
