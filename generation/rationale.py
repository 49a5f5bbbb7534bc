"""Rationale stage: the teacher reasons step by step and calls operators (DESIGN §4).

The loop is the same for every teacher (offline annotations, GPT-4o, a vLLM server): ask for a step,
run the operators it chose (only those available here), feed the results back, stop at
`final_answer` or the step limit, run the reflection checks, then ask for the short answer. Each
answer is then judged `grounded` or not by `generation.quality` (the definition the audit uses).

An operator's arguments may hold a `region` (`[x1, y1, x2, y2]` in pixels of the first image): the
operator then runs on that crop (`operators.images.crop_region`), e.g. OCR on Visual CoT's annotated box.
A fraction `staged_rate` of questions (by a hash of the id) ask the teacher to stage a defect for the
reflection checks to find (`TeacherContext.staged`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from generation.quality.definitions import equations, evidence_of, judge_question
from generation.reflection import run_reflection
from generation.schema import Observation, QATrajectory, Sample, Step, TeacherUsage, Trajectory, is_math
from generation.splits import hash_fraction
from generation.teachers.base import StepDecision, Teacher, TeacherContext
from generation.verify import answers_match
from operators.base import OperatorResult, OperatorRunner
from operators.images import LoadedImage, crop_region


async def _call(operators: OperatorRunner, name: str, images: Sequence[LoadedImage], **args) -> OperatorResult:
    """One operator call. How it runs is the operator's business (`operators.base`): a local model on
    its own thread, one call at a time; an endpoint-bound backend awaited here, many at once."""
    return await operators.call(name, images, **args)


@dataclass
class RationaleSettings:
    max_steps: int = 5
    reflection: bool = True
    staged_rate: float = 0.0  # `reflection.staged_rate`


def staged_defect(sample: Sample, qa_index: int, rate: float) -> Optional[str]:
    """Which defect this question stages, if any: `math` for a math question whose native solution has a
    calculation to leave out, else `general`; chosen by a hash of the id (every worker and rerun agree)
    for a fraction `rate` of questions."""
    if rate <= 0 or hash_fraction(f"{sample.id}#{qa_index}#staged") >= rate:
        return None
    qa = sample.qas[qa_index]
    return "math" if is_math(sample, qa) and equations(qa.source_rationale or "") else "general"


async def _observe(decision: StepDecision, images: list[LoadedImage], operators: OperatorRunner,
                   so_far: list[Observation]) -> tuple[list[str], Optional[str], list[Observation]]:
    """Run the step's operators, then RAG. Returns (operators run, rag query used, observations)."""
    chosen = [name for name in dict.fromkeys(decision.operators) if name != "rag" and name in operators.available]
    observations: list[Observation] = []
    for name in chosen:
        args = dict(decision.operator_args.get(name, {}))
        region = args.pop("region", None)
        if name == "image_caption":
            args.setdefault("context", [o.text for o in so_far + observations])
        inputs = [crop_region(images[0], region)] if region is not None and images else images
        result = await _call(operators, name, inputs, **args)
        observations.append(Observation(operator=name, text=result.text, backend=result.backend))
    rag_query = decision.rag_query if decision.rag_query and "rag" in operators.available else None
    if rag_query:
        result = await _call(operators, "rag", [], query=rag_query)
        observations.append(Observation(operator="rag", text=result.text, backend=result.backend))
    return chosen, rag_query, observations


async def reason_about_question(ctx: TeacherContext, teacher: Teacher, operators: OperatorRunner,
                                settings: RationaleSettings) -> tuple[QATrajectory, TeacherUsage]:
    usage = TeacherUsage(model=teacher.model_name)
    observed: list[Observation] = [o for qa in ctx.previous for s in qa.steps for o in s.observations]
    if ctx.staged is None:
        ctx.staged = staged_defect(ctx.sample, ctx.qa_index, settings.staged_rate if settings.reflection else 0.0)
    for index in range(settings.max_steps):
        decision = await teacher.next_step(ctx)
        usage = usage.add(decision.usage)
        ctx.staged_written = ctx.staged_written or decision.staged
        if decision.next_action == "final_answer" or index == settings.max_steps - 1:
            ctx.steps.append(Step(thought=decision.thought, signal="end"))
            break
        names, rag_query, observations = await _observe(decision, ctx.images, operators, observed)
        observed += observations
        ctx.steps.append(Step(thought=decision.thought, operators=names, rag_query=rag_query,
                              signal="continue", observations=observations))

    reflection = None
    if settings.reflection:
        reflection, reflection_usage = await run_reflection(ctx, teacher)
        usage = usage.add(reflection_usage)
    final = await teacher.final_answer(ctx)
    usage = usage.add(final.usage)
    answer = final.answer.strip()
    trajectory = QATrajectory(
        question=ctx.qa.question,
        reference_answer=ctx.qa.answer,
        steps=list(ctx.steps),
        final_answer=answer,
        verified=answers_match(answer, ctx.qa),
        grounded=judge_question(ctx.qa.question, ctx.steps, answer, ctx.qa.choices,
                                prior=evidence_of(ctx.previous))[0].grounded,
    )
    if reflection is not None:
        trajectory.reflection = reflection
    return trajectory, usage


async def generate_trajectory(sample: Sample, images: list[LoadedImage], teacher: Teacher,
                              operators: OperatorRunner, settings: RationaleSettings) -> Trajectory:
    """All questions of one dialogue, in order; later questions see the earlier ones' reasoning."""
    usage = TeacherUsage(model=teacher.model_name)
    done: list[QATrajectory] = []
    for qa_index in range(len(sample.qas)):
        ctx = TeacherContext(sample=sample, qa_index=qa_index, images=images,
                             operators_available=list(operators.available), previous=list(done))
        qa_trajectory, qa_usage = await reason_about_question(ctx, teacher, operators, settings)
        done.append(qa_trajectory)
        usage = usage.add(qa_usage)
    # Read at the end: a teacher that finds out mid-sample that its model takes no images answered
    # this sample's later calls text-only (its refused calls were re-sent without the images).
    return Trajectory(sample_id=sample.id, qas=done, usage=usage, operators_available=list(operators.available),
                      teacher_mode=teacher.mode)
