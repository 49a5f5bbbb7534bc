"""Rationale stage: the teacher reasons step by step and calls operators (DESIGN §4).

The loop is the same for every teacher (offline annotations, GPT-4o, a vLLM server): ask for a step,
run the operators it chose (only those available here), feed the results back, stop at
`final_answer` or the step limit, run the reflection checks, then ask for the short answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from generation.reflection import run_reflection
from generation.schema import Observation, QATrajectory, Sample, Step, TeacherUsage, Trajectory
from generation.teachers.base import StepDecision, Teacher, TeacherContext
from generation.verify import answers_match
from operators.base import OperatorResult, OperatorRunner
from operators.images import LoadedImage


async def _call(operators: OperatorRunner, name: str, images: Sequence[LoadedImage], **args) -> OperatorResult:
    """One operator call. How it runs is the operator's business (`operators.base`): a local model on
    its own thread, one call at a time; an endpoint-bound backend awaited here, many at once."""
    return await operators.call(name, images, **args)


@dataclass
class RationaleSettings:
    max_steps: int = 5
    reflection: bool = True


async def _observe(decision: StepDecision, images: list[LoadedImage], operators: OperatorRunner,
                   so_far: list[Observation]) -> tuple[list[str], Optional[str], list[Observation]]:
    """Run the step's operators, then RAG. Returns (operators run, rag query used, observations)."""
    chosen = [name for name in dict.fromkeys(decision.operators) if name != "rag" and name in operators.available]
    observations: list[Observation] = []
    for name in chosen:
        args = dict(decision.operator_args.get(name, {}))
        if name == "image_caption":
            args.setdefault("context", [o.text for o in so_far + observations])
        result = await _call(operators, name, images, **args)
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
    for index in range(settings.max_steps):
        decision = await teacher.next_step(ctx)
        usage = usage.add(decision.usage)
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
