"""Reflection stage: the general "cheating" check and, for math questions, the skipped-steps check.

A defect becomes two steps in the dialogue: the assistant's reflection step (`signal=reflection`,
its thought is the defect) and the repaired step (`signal=end`). The step that used to end the
reasoning now continues it, so signals stay in order: continue…, reflection, end.
"""
from __future__ import annotations

from typing import Optional

from generation.schema import Reflection, Step, TeacherUsage
from generation.teachers.base import ReflectionVerdict, Teacher, TeacherContext


def is_math_question(ctx: TeacherContext) -> bool:
    return bool(ctx.qa.meta.get("math") or ctx.sample.meta.get("math"))


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
        verdict, check_usage = await teacher.reflect(ctx, kind)
        usage = usage.add(check_usage)
        if verdict is None or not verdict.reason.strip():
            continue
        usage = usage.add(verdict.usage).add(await _apply(ctx, teacher, verdict))
        first = first or Reflection(kind=verdict.kind, reason=verdict.reason)
    return first, usage
