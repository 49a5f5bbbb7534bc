"""A planted API key and Hub token are found in no output byte: not in the shards, the card, the figure,
the run log, the quarantine records, the checkpoint, the operator cache, nor on stdout/stderr.

The keys are put where a real run could meet them: in the environment (as always), in a source record's
text (so it would flow into a row), in a file name that an error message quotes (a foundation-stage
quarantine), in a teacher reply, and in an HTTP 500 body that echoes the Authorization header.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.runner_support import copy_source, default_work_dir, mmat, mmat_env, read_quarantine, source, write_config

OPENAI_KEY = "sk-PLANTEDopenaiKEY0123456789abcdefXYZ"
HF_TOKEN = "hf_PLANTEDhubTOKEN0123456789abcdefXYZ"
# distinctive pieces too, so a half-masked copy would also be caught
NEEDLES = [OPENAI_KEY, HF_TOKEN, "PLANTEDopenaiKEY", "PLANTEDhubTOKEN", "0123456789abcdefXYZ"]


def _leaks(paths: list[Path], texts: list[str]) -> list[str]:
    found = []
    for root in paths:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found += [f"{path}: {n}" for n in NEEDLES if n.encode() in data]
    for i, text in enumerate(texts):
        found += [f"captured output {i}: {n}" for n in NEEDLES if n in text]
    return found


def test_planted_key_and_token_appear_in_no_output_byte(tmp_path):
    from tests.openai_server import OpenAICompatServer, error, ok

    env = mmat_env(OPENAI_API_KEY=OPENAI_KEY, HF_TOKEN=HF_TOKEN)
    tabmwp = copy_source("tabmwp", tmp_path)
    problems = json.loads((tabmwp / "problems_train.json").read_text())
    problems["322"]["question"] += f" (ticket {OPENAI_KEY} / {HF_TOKEN})"
    (tabmwp / "problems_train.json").write_text(json.dumps(problems))
    infoseek = copy_source("infoseek", tmp_path)
    id2image = (infoseek / "id2image.jsonl").read_text()
    (infoseek / "id2image.jsonl").write_text(
        id2image.replace("images/oven_04011235.jpg", f"images/{OPENAI_KEY}-{HF_TOKEN}.jpg"))
    sources = [source("tabmwp", tabmwp), source("infoseek", infoseek, limit=4)]

    # 1) the offline teacher: the key in a row's text and in a quarantine message
    offline_cfg = write_config(tmp_path / "offline.yaml", sources)
    offline_out = tmp_path / "offline-out"
    first = mmat("generate", "--config", offline_cfg, "--out", offline_out, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    quarantine = read_quarantine(default_work_dir(offline_out))
    assert {r["stage"] for r in quarantine.values()} == {"foundation"} and len(quarantine) == 2
    assert all("image file not found: images/***" in r["message"] for r in quarantine.values())

    # 2) an OpenAI-compatible teacher that repeats the key and whose error body echoes it
    with OpenAICompatServer() as server:
        server.script("rationale_step", ok({"thought": f"The header was Bearer {OPENAI_KEY} and {HF_TOKEN}.",
                                            "operators": [], "labels": [], "rag": {"needed": False, "query": None},
                                            "next_action": "final_answer"}))
        server.script("final_answer", error(500, f"proxy failed for token {HF_TOKEN}", echo_key=True))
        openai_cfg = write_config(tmp_path / "openai.yaml", [source("tabmwp", tabmwp, limit=4)],
                                  teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url,
                                           "max_retries": 0, "timeout_s": 20},
                                  runner={"max_concurrency": 1})
        openai_out = tmp_path / "openai-out"
        second = mmat("generate", "--config", openai_cfg, "--out", openai_out, cwd=tmp_path, env=env)
        assert any(r["status"] == 500 for r in server.requests)
    assert second.returncode == 0, second.stderr
    rationale = [r for r in read_quarantine(default_work_dir(openai_out)).values() if r["stage"] == "rationale"]
    assert len(rationale) == 1 and "HTTP 500" in rationale[0]["message"]

    outputs = [offline_out, default_work_dir(offline_out), openai_out, default_work_dir(openai_out)]
    assert all(p.is_dir() for p in outputs)
    assert (offline_out / "README.md").exists() and (openai_out / "README.md").exists()
    leaks = _leaks(outputs, [first.stdout, first.stderr, second.stdout, second.stderr])
    assert leaks == []
    # the row whose question carried the secrets is there, masked
    rows = (default_work_dir(offline_out) / "rows-0.jsonl").read_text()
    assert "(ticket *** / ***)" in rows
