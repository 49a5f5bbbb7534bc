"""Reflection stage: the general "cheating" check and, for math questions, the skipped-steps check.

Both checks are the teacher's. The general check judges by one definition whichever teacher runs it: the
offline teacher runs `leak_verdict`, the leak detector of `generation.quality.definitions` (the one the
audit's `leaked` counts), and the model-based prompt shows the same definition word for word
(`LEAK_DEFINITION`, `prompts/leak_definition.txt`), so a model's verdict is not second-guessed by a rule.

A defect becomes two steps in the dialogue: the assistant's reflection step (`signal=reflection`,
its thought is the defect) and the repaired step (`signal=end`). The step that used to end the
reasoning now continues it, so signals stay in order: continue…, reflection, end. The reflection
records its origin: `staged` when the teacher wrote that defect on purpose (`TeacherContext.staged`),
else `check`.
"""
from __future__ import annotations

from typing import Optional

from generation.quality.definitions import evidence_of, judge_question
from generation.schema import Reflection, Step, TeacherUsage, is_math
from generation.teachers.base import ReflectionVerdict, Teacher, TeacherContext


def is_math_question(ctx: TeacherContext) -> bool:
    return is_math(ctx.sample, ctx.qa)


def leak_verdict(ctx: TeacherContext) -> Optional[ReflectionVerdict]:
    """The general check's shared part: a step of this question that states the reference answer before
    the evidence supports it, or mentions a reference answer, and is not repaired yet."""
    verdict, _ = judge_question(ctx.qa.question, ctx.steps, ctx.qa.answer, ctx.qa.choices,
                                prior=evidence_of(ctx.previous))
    leaks = [leak for leak in verdict.leaks if not leak.repaired]
    if not leaks:
        return None
    reason = (f"Wait, {leaks[0].reason}: I used the answer instead of deriving it. I should reason from what the "
              "tools and passages show.")
    return ReflectionVerdict(kind="general", reason=reason)


async def _repair(ctx: TeacherContext, teacher: Teacher, verdict: ReflectionVerdict) -> tuple[Step, TeacherUsage]:
    if verdict.thought:
        return Step(thought=verdict.thought, signal="end"), TeacherUsage()
    ctx.reflection_feedback = verdict.reason
    try:
        decision = await teacher.next_step(ctx)
    finally:
        ctx.reflection_feedback = None
    return Step(thought=decision.thought, signal="end"), decision.usage


async def _apply(ctx: TeacherContext, teacher: Teacher, verdict: ReflectionVerdict) -> TeacherUsage:
    if ctx.steps and ctx.steps[-1].signal == "end":
        ctx.steps[-1] = ctx.steps[-1].model_copy(update={"signal": "continue"})
    ctx.steps.append(Step(thought=verdict.reason, signal="reflection"))
    repaired, usage = await _repair(ctx, teacher, verdict)
    ctx.steps.append(repaired)
    return usage


async def run_reflection(ctx: TeacherContext, teacher: Teacher) -> tuple[Optional[Reflection], TeacherUsage]:
    """Run both checks on `ctx.steps` (edited in place). Returns the first defect found, if any."""
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
