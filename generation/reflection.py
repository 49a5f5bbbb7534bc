"""Reflection stage: the general "cheating" check and, for math questions, the skipped-steps check.

Both checks are the teacher's. The general check judges by one definition whichever teacher runs it: the
offline teacher runs `leak_verdict`, the leak detector of `generation.quality.definitions` (the one the
audit's `leaked` counts), and the model-based prompt shows the same definition word for word
(`LEAK_DEFINITION`, `prompts/leak_definition.txt`).

A defect becomes two steps in the dialogue: the assistant's reflection step (`signal=reflection`,
its thought is the defect) and the repaired step (`signal=end`). The step that used to end the
reasoning now continues it, so signals stay in order: continue…, reflection, end. The reflection
records its origin: `staged` when the teacher wrote that defect on purpose (`TeacherContext.staged`),
else `check`.

A repair is verified before it is kept (issue 29). The dialogue the repair leaves is its *final
trajectory* (`generation.final_trajectory`: without the reflection, the old end it replaces and the
steps its thought names), the reasoning ORR compresses. A repaired step is rejected when

- it is empty, the same as or a near copy of a step it replaces (`near_copy`: the normalised word
  sets' Jaccard similarity is at least `COPY_JACCARD`), or says such a step again word for word with
  something added (`restates`: "Leaving that aside, <the old step>"), or
- the check that fired still fires on the final trajectory (the teacher's own check of that kind,
  and for the general check the shared leak rule `leak_verdict` too, so every ORR row passes the
  definition the audit counts).

A rejected repair gets one more attempt (`teacher.next_step` with the reason and why the first was
rejected as feedback, for the offline teacher as for a model); a second rejection quarantines the
sample (stage `reflection`, `RepairRejected`, "reflection did not repair: …"). Each verdict is
counted (`repair_counts`, this process's) and logged to the run log (`mmat.samples`, one record per
attempt with `data.repair`: `accepted` | `rejected`). Every reflection that reaches a row was accepted.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from typing import Optional

from generation.answers import normalise_answer
from generation.final_trajectory import replaced_in_question
from generation.quality.definitions import evidence_of, judge_question
from generation.schema import Quarantined, Reflection, Step, TeacherUsage, is_math
from generation.teachers.base import ReflectionVerdict, Teacher, TeacherContext

STAGE = "reflection"
COPY_JACCARD = 0.9  # a repair whose words overlap a replaced step's this much is a copy, not a repair
CONTAINED_WORDS = 5  # a replaced step (two sentences or more) of this many words said again whole is a copy too
ATTEMPTS = 2  # repairs asked for per reflection before the sample is quarantined

sample_log = logging.getLogger("mmat.samples")  # run log only
# This process's repair verdicts: accepted, rejected (each rejected attempt), quarantined (samples).
repair_counts: Counter = Counter()


class RepairRejected(Quarantined):
    """A reflection whose repair, asked for twice, did not repair."""

    def __init__(self, sample_id: str, why: str) -> None:
        super().__init__(sample_id, STAGE, f"reflection did not repair: {why}", "RepairRejected")


def is_math_question(ctx: TeacherContext) -> bool:
    return is_math(ctx.sample, ctx.qa)


def leak_verdict(ctx: TeacherContext) -> Optional[ReflectionVerdict]:
    """The general check's shared part: a step of this question that states the reference answer before
    the evidence supports it, or mentions a reference answer, and is not repaired yet. The reason names
    every such step ("step 1", "steps 1 and 3"): the reflection replaces the steps it names."""
    verdict, _ = judge_question(ctx.qa.question, ctx.steps, ctx.qa.answer, ctx.qa.choices,
                                prior=evidence_of(ctx.previous))
    leaks = [leak for leak in verdict.leaks if not leak.repaired]
    if not leaks:
        return None
    others = [leak.step + 1 for leak in leaks[1:]]
    also = f" (and step{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} too)" if others else ""
    reason = (f"Wait, {leaks[0].reason}{also}: I used the answer instead of deriving it. I should reason from "
              "what the tools and passages show.")
    return ReflectionVerdict(kind="general", reason=reason)


def words(text: str) -> set[str]:
    return set(normalise_answer(text).split())


def near_copy(repair: str, replaced: str, threshold: float = COPY_JACCARD) -> bool:
    """Is `repair` the same as `replaced`, or nearly (Jaccard similarity of their normalised word sets)?"""
    a, b = words(repair), words(replaced)
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= threshold


def restates(repair: str, replaced: str) -> bool:
    """Does `repair` say the whole of `replaced` again, word for word (normalised), with something added
    around it? Then the step it replaces is still said, in RR and in ORR. Only for a replaced step of two
    sentences or more and `CONTAINED_WORDS` words: a one-sentence claim ("The tower is 330 metres tall.")
    said again with its source is what a repair of an unsupported claim looks like."""
    old = normalise_answer(replaced)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", replaced.strip()) if normalise_answer(s)]
    return len(sentences) >= 2 and len(old.split()) >= CONTAINED_WORDS and f" {old} " in f" {normalise_answer(repair)} "


def final_context(ctx: TeacherContext) -> TeacherContext:
    """`ctx` with its steps reduced to the final trajectory: replaced steps and reflections go; a replaced
    step that called tools stays as its calls and results alone (empty thought), since what the tools
    returned is still evidence the dialogue showed."""
    replaced = replaced_in_question(ctx.steps)
    steps = []
    for index, step in enumerate(ctx.steps):
        if index not in replaced:
            steps.append(step)
        elif step.signal != "reflection" and step.observations:
            steps.append(step.model_copy(update={"thought": ""}))
    return dataclasses.replace(ctx, steps=steps, reflection_feedback=None)


async def _still_fires(ctx: TeacherContext, teacher: Teacher, kind: str) -> tuple[Optional[str], TeacherUsage]:
    """The check of `kind` on the final trajectory: why it still fires, or None."""
    final = final_context(ctx)
    verdict, usage = await teacher.reflect(final, kind)  # type: ignore[arg-type]
    usage = usage.add(verdict.usage) if verdict is not None else usage
    if verdict is not None and verdict.reason.strip():
        return f"the {kind} check still fires after it: {verdict.reason.strip()}", usage
    if kind == "general":
        rule = leak_verdict(final)
        if rule is not None:
            return f"the leak check still fires after it: {rule.reason}", usage
    return None, usage


async def verify_repair(ctx: TeacherContext, teacher: Teacher, kind: str) -> tuple[Optional[str], TeacherUsage]:
    """Why the repair just appended (`ctx.steps[-1]`, after the reflection step) does not repair, or None."""
    repair = ctx.steps[-1].thought
    if not repair.strip():
        return "the repaired step is empty", TeacherUsage()
    reflection_at = len(ctx.steps) - 2
    replaced = sorted(i for i in replaced_in_question(ctx.steps[:-1]) if i != reflection_at)
    for index in replaced:
        old = ctx.steps[index].thought
        if near_copy(repair, old):
            same = "the same as" if words(repair) == words(old) else "a near copy of"
            return f"the repaired step is {same} step {index + 1}, which it replaces", TeacherUsage()
        if restates(repair, old):
            return f"the repaired step says step {index + 1} again word for word, which it replaces", TeacherUsage()
    return await _still_fires(ctx, teacher, kind)


async def _repair(ctx: TeacherContext, teacher: Teacher, verdict: ReflectionVerdict,
                  rejected: Optional[str]) -> tuple[Step, TeacherUsage]:
    if verdict.thought and rejected is None:
        return Step(thought=verdict.thought, signal="end"), TeacherUsage()
    feedback = verdict.reason
    if rejected is not None:
        feedback += (f" A first repair was rejected: {rejected}. Write a step that fixes the problem, in your own "
                     "words, from what the tools showed.")
    ctx.reflection_feedback = feedback
    try:
        decision = await teacher.next_step(ctx)
    finally:
        ctx.reflection_feedback = None
    return Step(thought=decision.thought, signal="end"), decision.usage


def _record(ctx: TeacherContext, kind: str, verdict: str, attempt: int, why: str = "") -> None:
    repair_counts[verdict] += 1
    data = {"id": ctx.sample.id, "question": ctx.qa_index, "repair": verdict, "kind": kind, "attempt": attempt}
    if why:
        data["why"] = why
    sample_log.info("reflection repair %s: %s (%s, attempt %d)%s", verdict, ctx.sample.id, kind, attempt,
                    f": {why}" if why else "", extra={"data": data})


async def _apply(ctx: TeacherContext, teacher: Teacher, verdict: ReflectionVerdict) -> TeacherUsage:
    """Append the reflection step and a verified repair; raises `RepairRejected` after `ATTEMPTS` rejections."""
    if ctx.steps and ctx.steps[-1].signal == "end":
        ctx.steps[-1] = ctx.steps[-1].model_copy(update={"signal": "continue"})
    ctx.steps.append(Step(thought=verdict.reason, signal="reflection"))
    usage = TeacherUsage()
    rejected: Optional[str] = None
    for attempt in range(1, ATTEMPTS + 1):
        repaired, repair_usage = await _repair(ctx, teacher, verdict, rejected)
        ctx.steps.append(repaired)
        rejected, check_usage = await verify_repair(ctx, teacher, verdict.kind)
        usage = usage.add(repair_usage).add(check_usage)
        if rejected is None:
            _record(ctx, verdict.kind, "accepted", attempt)
            return usage
        _record(ctx, verdict.kind, "rejected", attempt, rejected)
        ctx.steps.pop()
    repair_counts["quarantined"] += 1
    raise RepairRejected(ctx.sample.id, f"{verdict.kind} reflection, {ATTEMPTS} attempts; {rejected}")


async def run_reflection(ctx: TeacherContext, teacher: Teacher) -> tuple[Optional[Reflection], TeacherUsage]:
    """Run both checks on `ctx.steps` (edited in place). Returns the first defect found, if any; raises
    `RepairRejected` (a `Quarantined`) when a defect's repair is rejected twice."""
    usage = TeacherUsage()
    first: Optional[Reflection] = None
    kinds = ["general"] + (["math"] if is_math_question(ctx) else [])
    for kind in kinds:
        verdict, check_usage = await teacher.reflect(ctx, kind)  # type: ignore[arg-type]
        usage = usage.add(check_usage)
        if verdict is None or not verdict.reason.strip():
            continue
        usage = usage.add(verdict.usage).add(await _apply(ctx, teacher, verdict))
        origin = "staged" if ctx.staged_written and ctx.staged == verdict.kind else "check"
        first = first or Reflection(kind=verdict.kind, reason=verdict.reason, origin=origin)
    return first, usage
