"""Integration stage: one trajectory → one RR row and one ORR row (DESIGN §5-§6).

Pure functions over plain data, so the layouts can be pinned by golden-string tests. Messages use the
content-block form (`{"type": "text"|"image", "text": ...}`) that transformers chat templates and
TRL read directly; the first user turn holds one image block per image, in order.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from generation.schema import ENGINE_VERSION, QATrajectory, Sample, Step, Trajectory

PROMPTS = Path(__file__).parent / "prompts"

NO_RESULTS_TURN = (
    "No additional operator or rag results were selected in the previous step. Please continue your reasoning."
)
REFLECTION_TURN = "Please make a reflection."
SUMMARY_TURN = "Based on the above information, please summarize and give the answer to the initial question: {question}"
ORR_API_INTRO = "Use the following API outputs to help answer the question:"
ORR_API_BLOCK = "<|begin_api_invoke|>{name}<|end_api_invoke|><|begin_result_of_api|>{result}<|end_result_of_api|>"


@lru_cache(maxsize=None)
def rr_system_prompt() -> str:
    return (PROMPTS / "rr_system.txt").read_text().strip()


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_block() -> dict[str, Any]:
    return {"type": "image", "text": None}


def message(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": list(blocks)}


def render_step(step: Step) -> str:
    """`<THOUGHT>…</THOUGHT><OPERATOR>a, b</OPERATOR><RAG>q</RAG><SIGNAL>s</SIGNAL>`; unused tags omitted."""
    out = f"<THOUGHT>{step.thought}</THOUGHT>"
    if step.operators:
        out += f"<OPERATOR>{', '.join(step.operators)}</OPERATOR>"
    if step.rag_query:
        out += f"<RAG>{step.rag_query}</RAG>"
    return out + f"<SIGNAL>{step.signal}</SIGNAL>"


def render_observation_turn(step: Step) -> str:
    """The user turn that answers a `continue` step with its operator/RAG results (or their absence)."""
    if not step.observations:
        return NO_RESULTS_TURN
    names = ", ".join(dict.fromkeys(obs.operator for obs in step.observations))
    blocks = " ".join(f"-{obs.operator} information: {obs.text}" for obs in step.observations)
    return f"Here are {names} results from the previous step:{blocks} Please continue your reasoning."


def _turn_after(step: Step, question: str) -> str:
    if step.signal == "continue":
        return render_observation_turn(step)
    if step.signal == "reflection":
        return REFLECTION_TURN
    return SUMMARY_TURN.format(question=question)


def rr_messages(trajectory: Trajectory, n_images: int) -> list[dict[str, Any]]:
    messages = [message("system", text_block(rr_system_prompt()))]
    for index, qa in enumerate(trajectory.qas):
        images = [image_block() for _ in range(n_images)] if index == 0 else []
        messages.append(message("user", *images, text_block(qa.question)))
        for step in qa.steps:
            messages.append(message("assistant", text_block(render_step(step))))
            messages.append(message("user", text_block(_turn_after(step, qa.question))))
        messages.append(message("assistant", text_block(qa.final_answer)))
    return messages


def orr_api_outputs(trajectory: Trajectory) -> list[tuple[str, str]]:
    """Every non-RAG operator result of the dialogue, in call order, each distinct result once."""
    seen: dict[tuple[str, str], None] = {}
    for qa in trajectory.qas:
        for step in qa.steps:
            for obs in step.observations:
                if obs.operator != "rag":
                    seen.setdefault((obs.operator, obs.text), None)
    return list(seen)


def orr_thought(qa: QATrajectory) -> str:
    """The compressed reasoning: every step's thought but the reflection requests themselves."""
    return " ".join(step.thought for step in qa.steps if step.signal != "reflection")


def orr_messages(trajectory: Trajectory, n_images: int) -> list[dict[str, Any]]:
    messages = []
    api_outputs = orr_api_outputs(trajectory)
    for index, qa in enumerate(trajectory.qas):
        text = qa.question
        if index == 0 and api_outputs:
            blocks = "\n".join(ORR_API_BLOCK.format(name=name, result=result) for name, result in api_outputs)
            text = f"{text}\n{ORR_API_INTRO}\n{blocks}"
        images = [image_block() for _ in range(n_images)] if index == 0 else []
        messages.append(message("user", *images, text_block(text)))
        answer = f"<THOUGHT>{orr_thought(qa)}</THOUGHT><ANSWER>The answer is: {qa.final_answer}</ANSWER>"
        messages.append(message("assistant", text_block(answer)))
    return messages


def _steps_column(trajectory: Trajectory) -> list[dict[str, Any]]:
    return [
        {
            "thought": step.thought,
            "operators": list(step.operators),
            "rag_query": step.rag_query,
            "signal": step.signal,
            "observations": [{"operator": o.operator, "text": o.text, "backend": o.backend} for o in step.observations],
        }
        for qa in trajectory.qas
        for step in qa.steps
    ]


def build_rows(sample: Sample, trajectory: Trajectory, image_bytes: list[bytes]) -> dict[str, dict[str, Any]]:
    """The RR and ORR rows of one dialogue, in the row schema of `mmat_1m.FEATURES`."""
    verified = [qa.verified for qa in trajectory.qas if qa.verified is not None]
    common = {
        "id": sample.id,
        "source": sample.source,
        "subset": sample.subset,
        "images": [{"bytes": data, "path": None} for data in image_bytes],
        "steps": _steps_column(trajectory),
        "question": sample.question,
        "answer": sample.answer,
        "reflection": trajectory.reflection.model_dump(),
        "teacher": trajectory.usage.model_dump(),
        "meta": {
            "operators_available": list(trajectory.operators_available),
            "verified": all(verified) if verified else None,
            "judge_score": trajectory.judge_score,
        },
        "engine_version": ENGINE_VERSION,
    }
    n = len(image_bytes)
    return {
        "rr": {**common, "format": "rr", "messages": rr_messages(trajectory, n)},
        "orr": {**common, "format": "orr", "messages": orr_messages(trajectory, n)},
    }
