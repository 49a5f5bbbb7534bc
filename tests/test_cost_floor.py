"""benchmarks/cost_floor.py: the floor under issue 31's two targets, checked on requests whose tokens are
counted by hand, so that the closing note's "no layout meets both" rests on arithmetic a test can fail."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.prefix_cache import IMAGE_TOKENS, prompt_tokens

_SPEC = importlib.util.spec_from_file_location(
    "cost_floor", Path(__file__).resolve().parents[1] / "benchmarks" / "cost_floor.py")
cost_floor = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cost_floor)  # type: ignore[union-attr]

SYSTEM = "s" * 40          # 10 tokens, the same in every request
RULE = "r" * 80            # 20 tokens: a rule line two task texts repeat


def _request(task: str, image: str | None, *texts: str) -> dict:
    content = ([{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}] if image else [])
    content += [{"type": "text", "text": text} for text in texts]
    return {"task": task, "payload": {"messages": [{"role": "system", "content": SYSTEM},
                                                   {"role": "user", "content": content}]}}


def _sample(image: str, question: str) -> list[dict]:
    q = f"Question: {question}"                                    # 4 chars a token, rounded up per line
    return [_request("rationale_step", image, q, f"Task: step\n{RULE}"),
            _request("rationale_step", image, q, "Step 1: seen", f"Task: step\n{RULE}"),
            _request("reflection_general", None, q, "Step 1: seen", f"Task: check\n{RULE}"),
            _request("final_answer", image, q, "Step 1: seen", "Task: answer")]


def _tokens(*lines: str) -> int:
    return sum(-(-len(line) // 4) for line in lines)


def test_bounds_count_each_distinct_line_and_image_once_per_sample():
    records = _sample("AAAA", "what colour?") + _sample("BBBB", "which shape?")
    numbers = cost_floor.floor(records, baseline_tokens=4000)
    assert numbers["samples"] == 2 and numbers["calls_per_sample"] == 4  # the text-only check joins its sample
    lines = (SYSTEM, "Question: what colour?", "Task: step", RULE, "Step 1: seen", "Task: check", "Task: answer")
    u_min = IMAGE_TOKENS + _tokens(*lines)
    assert numbers["u_min"] == u_min
    assert numbers["bound_a"] == 3 * u_min                             # share >= 0.8: C >= 3U
    # B: every one of the 4 calls carries a cached 1,024-token prefix; 3 of them show the image
    assert numbers["bound_b"] == 4 * 512 + IMAGE_TOKENS + IMAGE_TOKENS / 2 * 2
    own = _tokens("Question: what colour?")                            # the only line no other sample shows
    assert numbers["bound_mixed"] == max(3 * (2 * IMAGE_TOKENS + own), 512 + 2 * IMAGE_TOKENS + IMAGE_TOKENS / 2)
    carried = sum(prompt_tokens(r["payload"]) for r in records) / 2          # per sample (two), as the cache counts
    assert numbers["cost_only"] == (carried + u_min) / 2                    # each token at half, each part once more
    assert numbers["cost_only_unformatted"] == numbers["cost_only"]          # no schema was sent
    assert numbers["target"] == pytest.approx(2600)


def test_samples_that_share_an_image_share_its_cost_and_the_verdict_reads_the_lowest_bound():
    shared = _sample("AAAA", "what colour?") + _sample("AAAA", "how many?")
    numbers = cost_floor.floor(shared, baseline_tokens=4000, samples=2)
    assert numbers["groups"] == 1 and numbers["u_min"] * 2 == IMAGE_TOKENS + _tokens(
        SYSTEM, "Question: what colour?", "Question: how many?", "Task: step", RULE, "Step 1: seen",
        "Task: check", "Task: answer")
    assert "no layout" in cost_floor.report({**numbers, "target": 100.0})
    assert "leave room for a layout" in cost_floor.report({**numbers, "target": 1e9})


def test_the_schema_counts_once_in_u_min_and_not_at_all_without_it():
    records = _sample("AAAA", "what colour?")
    schema = {"name": "reply", "schema": {"type": "object", "properties": {"x": {"type": "string"}}}}
    for record in records:
        record["payload"]["response_format"] = {"type": "json_schema", "json_schema": schema}
    with_schema = cost_floor.floor(records, baseline_tokens=4000)
    bare = cost_floor.floor(_sample("AAAA", "what colour?"), baseline_tokens=4000)
    schema_tokens = with_schema["u_min"] - bare["u_min"]
    assert schema_tokens > 10                                                 # one distinct text, once
    assert with_schema["cost_only"] > with_schema["cost_only_unformatted"] == pytest.approx(bare["cost_only"])
