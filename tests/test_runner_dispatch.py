"""The local engine's dispatch: longest samples first within a window, so a run does not end waiting
on one long sample that happened to be planned last; every sample exactly once, never more in flight
than allowed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from generation.config import PipelineConfig
from generation.plan import RunOptions
from publishing.run import run_generation
from generation.sample_worker import expected_calls, longest_first
from generation.schema import QA, Sample
from tests.openai_server import OpenAICompatServer

REPO = Path(__file__).resolve().parents[1]


def sample(sid: str, questions: int, math: bool = False) -> Sample:
    return Sample(id=sid, source="llava_cot", subset="t",
                  qas=[QA(question=f"{sid} q{i}?", answer="1" if math else "yes", meta={"math": math})
                       for i in range(questions)])


def test_expected_calls_counts_questions_and_math_reflections():
    assert expected_calls(sample("a", 1)) == 2
    assert expected_calls(sample("b", 3)) == 6
    assert expected_calls(sample("c", 2, math=True)) == 6


@pytest.mark.parametrize("window", [1, 2, 5, 50])
def test_every_sample_comes_out_exactly_once(window):
    plan = [sample(f"s{i:02d}", 1 + (i * 7) % 4) for i in range(23)]
    out = list(longest_first(iter(plan), window=window))
    assert sorted(s.id for s in out) == [s.id for s in plan]


def test_each_pick_is_the_costliest_of_the_window_and_the_tail_is_shortest_last():
    costs = [1, 1, 1, 4, 1, 3, 1, 1, 2, 1]
    plan = [sample(f"s{i}", c) for i, c in enumerate(costs)]
    out = list(longest_first(iter(plan), window=3))
    # the long samples planned late start before short ones planned earlier
    order = [s.id for s in out]
    assert order.index("s3") < order.index("s1") and order.index("s5") < order.index("s2")
    # once the plan runs out, what is left goes longest first: the last picks never grow
    tail = [len(s.qas) for s in out[-3:]]
    assert tail == sorted(tail, reverse=True)
    # equal costs keep the plan's order
    ones = [s.id for s in out if len(s.qas) == 1]
    assert ones == sorted(ones, key=lambda x: int(x[1:]))


def test_it_holds_at_most_the_window_and_streams():
    pulled = []

    def plan():
        for i in range(1000):
            pulled.append(i)
            yield sample(f"s{i}", 1)

    stream = longest_first(plan(), window=8)
    next(stream)
    assert len(pulled) == 9  # the window and the one just offered, not the plan


def _source(root: Path, questions: dict[str, int]) -> Path:
    """A LLaVA-CoT folder (its released layout) whose records hold the given numbers of questions."""
    src = REPO / "samples" / "llava_cot"
    dest = root / "llava_cot"
    dest.mkdir(parents=True)
    for child in src.iterdir():
        if child.is_dir():
            shutil.copytree(child, dest / child.name)
    template = json.loads((src / "train.jsonl").read_text().splitlines()[0])
    with open(dest / "train.jsonl", "w", encoding="utf-8") as fh:
        for sid, n in questions.items():
            turns = []
            for q in range(n):
                turns += [{"from": "human", "value": f"Question {sid}-{q}: what is shown?"},
                          {"from": "gpt", "value": "<CONCLUSION> A cat. </CONCLUSION>"}]
            fh.write(json.dumps({**template, "id": sid, "conversations": turns}) + "\n")
    return dest


def test_a_real_run_starts_the_long_samples_first_and_finishes_each_once(tmp_path, monkeypatch):
    """Through the OpenAI-compatible server: the order in which samples reach the teacher."""
    planned = {"p1": 1, "p2": 1, "p3": 1, "p4": 3, "p5": 3, "p6": 1, "p7": 1}
    with OpenAICompatServer(latency_s=0.02) as server:
        config = PipelineConfig.model_validate({
            "name": "dispatch", "sources": [{"kind": "llava_cot", "path": str(_source(tmp_path, planned))}],
            "teacher": {"kind": "openai", "model": "local-test-model", "base_url": server.url,
                        "api_key_env": "MMAT_DISPATCH_KEY", "max_concurrency": 2, "on_mismatch": "keep"},
            "operators": {"ocr": {"backend": "off"}, "face_detection": {"backend": "off"},
                          "label_bbox": {"backend": "off"}, "image_caption": {"backend": "template"},
                          "rag": {"backend": "off"}},
            "rationale": {"max_steps": 1, "reflection": False}})
        monkeypatch.setenv("MMAT_DISPATCH_KEY", "sk-dispatch-test")
        summary = run_generation(config, RunOptions(out_dir=tmp_path / "out", quiet=True))
        texts = [json.dumps(p) for p in server.payloads()]
    assert summary.finished == len(planned) and summary.quarantined == 0
    first = {sid: next(i for i, t in enumerate(texts) if f"Question {sid}-0" in t) for sid in planned}
    # p4 and p5 (three questions each) reach the teacher before p2 and p3, planned before them
    assert max(first["p4"], first["p5"]) < min(first["p2"], first["p3"])
    # and each question was asked (no sample dropped or run twice from the window)
    for sid, n in planned.items():
        for q in range(n):
            assert any(f"Question {sid}-{q}" in t for t in texts), (sid, q)
