"""The Batch API transport against a loopback Files + Batches server, with the real `openai` client:
every batch state, an error file, an expired batch with part of its lines done, the size split, and a
resume that collects open batches without submitting any of them again."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from batch_server import BatchPlan, BatchServer
from generation.config import BatchOptions, PriceTable, TeacherConfig
from generation.teachers.base import TeacherFatalError
from generation.teachers.batch_client import (BatchRequestError, BatchTransport, batch_line, batch_prices,
                                              custom_id, http_failure_for)
from generation.teachers.batch_store import BatchFolderBusy, open_store
from openai_server import error, ok


def body(i: int, task: str = "final_answer", model: str = "gpt-4o") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 64,
            "response_format": {"type": "json_schema", "json_schema": {"name": task, "schema": {}, "strict": True}}}


def cfg(server: BatchServer, folder: Path, **options) -> TeacherConfig:
    opts = {"poll_s": 0.01, "flush_wait_s": 0.05, "folder": str(folder), **options}
    return TeacherConfig(kind="openai", base_url=server.url, batch=True, batch_options=BatchOptions(**opts),
                         max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)


async def ask(server: BatchServer, folder: Path, bodies: list[dict], **options) -> tuple[list, BatchTransport]:
    """Send `bodies` at once; each outcome is the reply dict or the exception it raised."""
    config = cfg(server, folder, **options)
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
    transport = BatchTransport(client, config, http_failure_for(config, server.url))
    try:
        outcomes = await asyncio.gather(*(transport(b) for b in bodies), return_exceptions=True)
    finally:
        await transport.aclose()
        await client.close()
    return list(outcomes), transport


def answers(outcomes: list) -> list:
    return [json.loads(o["choices"][0]["message"]["content"]) if isinstance(o, dict) else o for o in outcomes]


@pytest.fixture()
def server():
    with BatchServer() as srv:
        yield srv


def test_completed_batch_every_pending_state_answers_by_custom_id(server, tmp_path):
    server.script("final_answer", *[ok({"answer": f"a{i}"}) for i in range(5)])
    bodies = [body(i) for i in range(5)]
    outcomes, transport = asyncio.run(ask(server, tmp_path, bodies))
    got = answers(outcomes)
    assert all(isinstance(g, dict) for g in got), got
    # the server answers in input order but writes its output file reversed: mapping is by custom_id
    assert [g["answer"] for g in got] == [f"a{i}" for i in range(5)]
    assert server.creates == 1 and sorted(server.submitted) == sorted(custom_id(b) for b in bodies)
    (batch,) = server.batches.values()
    assert batch["endpoint"] == "/v1/chat/completions" and batch["completion_window"] == "24h"
    assert batch["metadata"]["mmat_run"] == transport.run_tag
    upload = server.uploads[batch["input_file_id"]].decode().splitlines()
    assert json.loads(upload[0])["url"] == "/v1/chat/completions" and json.loads(upload[0])["method"] == "POST"
    journal = [json.loads(x) for x in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert [e["event"] for e in journal] == ["intent", "created", "done"]
    assert journal[1]["batch"] == batch["id"] and journal[2]["status"] == "completed"


def test_expired_batch_keeps_done_lines_and_resubmits_the_rest(server, tmp_path):
    server.plan(BatchPlan(states=("validating", "in_progress", "expired"), done=2))
    bodies = [body(i) for i in range(5)]
    outcomes, _ = asyncio.run(ask(server, tmp_path, bodies))
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert server.creates == 2
    first, second = (sorted(server.uploads[b["input_file_id"]].decode().splitlines()) for b in
                     sorted(server.batches.values(), key=lambda b: b["id"]))
    ids = [custom_id(b) for b in bodies]
    assert len(first) == 5 and len(second) == 3
    assert sorted(json.loads(x)["custom_id"] for x in second) == sorted(ids[2:])  # the two done: not again
    assert sorted(server.submitted) == sorted(ids + ids[2:])


def test_failed_batch_fails_each_request_with_the_providers_reason(server, tmp_path):
    server.plan(BatchPlan(states=("validating", "failed")))
    outcomes, _ = asyncio.run(ask(server, tmp_path, [body(i) for i in range(3)]))
    assert all(isinstance(o, BatchRequestError) for o in outcomes), outcomes
    assert "failed" in str(outcomes[0]) and "invalid_json_line" in str(outcomes[0])
    assert server.creates == 1


def test_cancelled_batch_keeps_done_lines_and_fails_the_rest(server, tmp_path):
    server.plan(BatchPlan(states=("in_progress", "cancelling", "cancelled"), done=1))
    outcomes, _ = asyncio.run(ask(server, tmp_path, [body(i) for i in range(3)]))
    assert isinstance(outcomes[0], dict)
    assert all(isinstance(o, BatchRequestError) and "cancelled" in str(o) for o in outcomes[1:]), outcomes
    assert server.creates == 1


def test_error_file_lines_quarantine_with_reason_and_transient_ones_are_asked_again(server, tmp_path):
    server.script("final_answer", error(400, "image too large"))
    server.script("rationale_step", error(500, "overloaded"))
    bodies = [body(0), body(1, task="rationale_step")]
    outcomes, _ = asyncio.run(ask(server, tmp_path, bodies))
    assert isinstance(outcomes[0], BatchRequestError) and "HTTP 400" in str(outcomes[0])
    assert "image too large" in str(outcomes[0])
    assert isinstance(outcomes[1], dict)  # the 500 went into a second batch and was answered there
    assert server.creates == 2 and server.submitted.count(custom_id(bodies[1])) == 2
    stored = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {s["custom_id"] for s in stored} == {custom_id(b) for b in bodies}  # the 500 line is not stored
    assert all(s["response"]["status_code"] in (200, 400) for s in stored)


def test_split_by_request_count_and_bytes(server, tmp_path):
    bodies = [body(i) for i in range(7)]
    outcomes, _ = asyncio.run(ask(server, tmp_path / "n", bodies, max_requests=3))
    assert all(isinstance(o, dict) for o in outcomes)
    sizes = sorted(len(server.uploads[b["input_file_id"]].splitlines()) for b in server.batches.values())
    assert sizes == [1, 3, 3]

    line = len(batch_line(custom_id(body(0)), body(0)))
    limit = 2 * line + 10  # two lines fit, a third does not
    before = set(server.batches)
    outcomes, _ = asyncio.run(ask(server, tmp_path / "b", [body(i) for i in range(10, 15)], max_bytes=limit))
    assert all(isinstance(o, dict) for o in outcomes)
    files = [server.uploads[b["input_file_id"]] for k, b in server.batches.items() if k not in before]
    assert sorted(len(f.splitlines()) for f in files) == [1, 2, 2]
    assert all(len(f) <= limit for f in files)


def test_a_request_larger_than_a_batch_file_fails_alone(server, tmp_path):
    big = body(1)
    big["messages"][0]["content"] = "x" * 5000
    outcomes, _ = asyncio.run(ask(server, tmp_path, [body(0), big], max_bytes=2000))
    assert isinstance(outcomes[0], dict)
    assert isinstance(outcomes[1], BatchRequestError) and "max_bytes" in str(outcomes[1])


def test_one_model_per_batch_file(server, tmp_path):
    outcomes, _ = asyncio.run(ask(server, tmp_path, [body(0), body(1, model="gpt-4o-mini"), body(2)]))
    assert all(isinstance(o, dict) for o in outcomes)
    models = sorted(sorted({json.loads(x)["body"]["model"] for x in server.uploads[b["input_file_id"]].splitlines()})
                    for b in server.batches.values())
    assert models == [["gpt-4o"], ["gpt-4o-mini"]]


def test_default_limits_are_the_providers():
    options = BatchOptions()
    assert options.max_requests == 50_000 and options.max_bytes == 200_000_000
    with pytest.raises(ValueError):
        BatchOptions(max_requests=50_001)
    with pytest.raises(ValueError):
        BatchOptions(max_bytes=200_000_001)
    with pytest.raises(ValueError):
        TeacherConfig(kind="offline", batch=True)


def test_batch_price_is_half_of_every_price():
    half = batch_prices(PriceTable(prompt_per_1m=2.5, completion_per_1m=10.0))
    assert (half.prompt_per_1m, half.completion_per_1m) == (1.25, 5.0)
    assert batch_prices(None) is None


def test_stored_answer_is_used_without_a_new_submission(server, tmp_path):
    bodies = [body(i) for i in range(3)]
    asyncio.run(ask(server, tmp_path, bodies))
    assert server.creates == 1
    outcomes, transport = asyncio.run(ask(server, tmp_path, bodies))  # a rerun asks the same requests
    assert all(isinstance(o, dict) for o in outcomes)
    assert server.creates == 1 and transport.counts["requests"] == 0


def _open_batch_left_by_a_killed_run(server: BatchServer, folder: Path, bodies: list[dict], create: bool) -> str:
    """What a run killed right after recording its intent leaves: the file uploaded, the intent in the
    journal, and (when `create`) the batch made on the server though the run never learnt its id."""
    async def go() -> str:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
        data = b"".join(batch_line(custom_id(b), b) for b in bodies)
        uploaded = await client.files.create(file=("x.jsonl", data), purpose="batch")
        store = open_store(folder)
        batch = store.intent("localkilled1", uploaded.id, [custom_id(b) for b in bodies])
        store.close()
        if create:
            await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h",
                                        metadata={"mmat_run": "x", "mmat_batch": batch.local})
        await client.close()
        return uploaded.id
    return asyncio.run(go())


@pytest.mark.parametrize("created_before_kill", [True, False])
def test_resume_finds_or_creates_an_open_batch_exactly_once(server, tmp_path, created_before_kill):
    bodies = [body(i) for i in range(4)]
    _open_batch_left_by_a_killed_run(server, tmp_path, bodies, create=created_before_kill)
    outcomes, transport = asyncio.run(ask(server, tmp_path, bodies))
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert server.creates == 1  # found by its metadata, or made now: never twice
    assert sorted(server.submitted) == sorted(custom_id(b) for b in bodies)
    assert transport.counts["resumed"] == 1 and transport.counts["requests"] == 0
    events = [json.loads(x)["event"] for x in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert events == ["intent", "created", "done"]


def test_torn_journal_line_is_dropped_and_the_next_event_starts_a_fresh_line(tmp_path):
    store = open_store(tmp_path)
    store.intent("a", "file-1", ["mmat-1"])
    store.close()
    with open(tmp_path / "batches.jsonl", "ab") as handle:
        handle.write(b'{"event":"created","loc')  # killed mid-write
    store = open_store(tmp_path)
    assert store.open["a"].batch_id is None
    store.created("a", "batch-9")
    store.close()
    store = open_store(tmp_path)
    assert store.open["a"].batch_id == "batch-9"
    store.close()


def test_one_run_per_batch_folder(tmp_path):
    store = open_store(tmp_path)
    try:
        with pytest.raises(BatchFolderBusy):
            open_store(tmp_path)
    finally:
        store.close()


def test_a_rejected_key_stops_the_run(tmp_path):
    with BatchServer(expected_key="sk-right") as srv:
        outcomes, _ = asyncio.run(ask(srv, tmp_path, [body(0)]))
    assert isinstance(outcomes[0], TeacherFatalError) and "sk-test" not in str(outcomes[0])
    assert srv.creates == 0


def test_a_second_process_on_the_same_batch_folder_stops_instead_of_quarantining(server, tmp_path):
    held = open_store(tmp_path)  # another live run's records
    try:
        outcomes, transport = asyncio.run(ask(server, tmp_path, [body(0)]))
    finally:
        held.close()
    assert isinstance(outcomes[0], TeacherFatalError) and "runner.processes: 1" in outcomes[0].fix
    assert server.creates == 0 and transport.fatal is not None


def test_a_resumed_intent_whose_file_is_gone_is_asked_again(server, tmp_path):
    bodies = [body(i) for i in range(2)]
    file_id = _open_batch_left_by_a_killed_run(server, tmp_path, bodies, create=False)
    del server.uploads[file_id]  # the provider no longer has the uploaded file: create answers 400
    outcomes, _ = asyncio.run(ask(server, tmp_path, bodies))
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert server.creates == 1 and sorted(server.submitted) == sorted(custom_id(b) for b in bodies)
