"""`mmat eval`: the agent over a dataset's questions, in one or more formats, scored and reported.

Each (question, format) pair is one unit of work; the pairs run in question order with every format
of a question next to the others, at most `concurrency` at once (like the teacher's bound in
generation), so the formats share the machine's conditions and their latency ratios compare like
with like. Every answer is scored with the project's verifier (`generation.verify.answers_match`:
choice letters, numbers, yes/no, InfoSeek aliases and ranges, the normal form of the source
adapters) and made durable (`agent.eval_store`) before the next pair starts, so a killed eval resumes
where it stopped. A problem that dooms every question (`AgentError`: the endpoint is gone) stops the
run at once; one question's problem is that question's `error` status.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional

from agent.core import Agent
from agent.settings import FORMATS
from agent.errors import AgentError, QuestionFailed
from agent.eval_data import EvalItem, EvalSet
from agent.eval_report import BASELINE, EvalReport, summarise
from agent.eval_store import AnswerStore
from agent.trajectory import ERROR, AgentResult
from generation.schema import QA
from generation.verify import answers_match

log = logging.getLogger("mmat.agent")

ALL = "all"
PROGRESS_EVERY_S = 10.0


def parse_formats(value: str) -> list[str]:
    """`rr`, `orr`, `plain`, a comma list of them, or `all` (the baseline first)."""
    names = [BASELINE, "orr", "rr"] if value.strip() == ALL else [
        part.strip() for part in value.split(",") if part.strip()]
    bad = [name for name in names if name not in FORMATS]
    if bad or not names:
        raise AgentError(f"--format {value!r}: use {', '.join(FORMATS)}, a comma list of them, or {ALL}")
    return list(dict.fromkeys(names))


def default_work_dir(dataset: str, config: Optional[str], split: str) -> Path:
    name = Path(dataset).name or dataset
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in (name, config, split) if p))
    return Path(".mmat-eval") / slug


def is_correct(item: EvalItem, answer: Optional[str]) -> bool:
    if answer is None:
        return False
    meta = {"answer_eval": item.aliases} if item.aliases not in (None, [], "") else {}
    return answers_match(answer, QA(question=item.question, answer=item.answer, choices=item.choices, meta=meta))


def answer_record(item: EvalItem, result: AgentResult) -> dict[str, Any]:
    """One durable line: the score, the numbers the report needs, and the trajectory (without the
    messages, which repeat the system prompt; the steps and every raw reply are kept)."""
    trajectory = result.to_dict()
    trajectory.pop("messages", None)
    return {
        "id": item.id, "source": item.source, "format": result.format, "model": result.model,
        "status": result.status, "answer": result.answer, "reference": item.answer,
        "correct": is_correct(item, result.answer), "turns": result.turns, "tool_calls": result.tool_calls,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "latency_s": round(result.latency_s, 4), "error": result.error, "trajectory": trajectory,
    }


async def _answer(agent: Agent, evalset: EvalSet, item: EvalItem, fmt: str) -> AgentResult:
    try:
        images = await asyncio.to_thread(evalset.images, item)
    except (OSError, QuestionFailed) as exc:
        return AgentResult(format=fmt, question=item.question, model=agent.chat.name, status=ERROR,
                           error=f"cannot read the images: {exc}")
    return await agent.run(images, item.question, format=fmt)


async def evaluate(agent: Agent, evalset: EvalSet, store: AnswerStore, formats: list[str], concurrency: int = 4,
                   on_answer: Optional[Callable[[dict[str, Any]], None]] = None) -> EvalReport:
    """Answer every (question, format) pair `store` does not hold yet; the report over all of them."""
    resolve = getattr(agent.chat, "resolve_model", None)
    model = await resolve() if resolve is not None else agent.chat.name
    answered = store.answered(model)
    todo = [(item, fmt) for item in evalset.items for fmt in formats if (fmt, item.id) not in answered]
    total = len(evalset.items) * len(formats)
    if answered:
        log.info("eval: %d of %d answers already in %s; asking the other %d", total - len(todo), total,
                 store.path, len(todo))
    pending = iter(todo)
    done = [0]
    last_log = [time.monotonic()]

    async def worker() -> None:
        for item, fmt in pending:  # one shared iterator: every pair is taken once
            record = answer_record(item, await _answer(agent, evalset, item, fmt))
            await asyncio.to_thread(store.add, record)
            done[0] += 1
            if on_answer is not None:
                on_answer(record)
            if time.monotonic() - last_log[0] >= PROGRESS_EVERY_S:
                last_log[0] = time.monotonic()
                log.info("eval: %d of %d asked this run", done[0], len(todo))

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo))))] if todo else []
    try:
        if tasks:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in finished:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ids = {item.id for item in evalset.items}
    return summarise(store.records(), formats, model, evalset.name, ids=ids)
