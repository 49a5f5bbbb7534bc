"""The optional quality pass (MAmmoTH-VL-style judge): one 0-1 score per dialogue.

The judge reads every question of the dialogue with its reasoning steps, tool results and final answer
(and the images), and rates coherence, relevance and accuracy from 0 to 1; the score is their mean.
It runs on the teacher's `ChatClient`, so it shares the teacher's concurrency bound, rate limiter,
retries and accounting. `teacher.judge: true` turns it on; `teacher.judge_model` picks another model.
"""
from __future__ import annotations

from typing import Optional

from generation.schema import Sample, TeacherUsage, Trajectory
from generation.teachers.chat_client import ChatClient
from generation.teachers.prompts import render_prompt
from generation.teachers.replies import SCHEMAS, JudgeReply
from operators.images import LoadedImage


def _qa_view(trajectory: Trajectory, sample: Sample) -> list[dict]:
    views = []
    for index, qa in enumerate(trajectory.qas):
        choices = sample.qas[index].choices if index < len(sample.qas) else []
        views.append({"question": qa.question, "choices": list(choices), "reference_answer": qa.reference_answer,
                      "steps": list(qa.steps), "final_answer": qa.final_answer})
    return views


async def judge_dialogue(chat: ChatClient, trajectory: Trajectory, sample: Sample,
                         images: Optional[list[LoadedImage]] = None,
                         model: Optional[str] = None) -> tuple[float, TeacherUsage]:
    """(score in [0, 1], the judge call's usage). Raises TeacherError when the judge cannot answer."""
    if images is None:
        images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
    system, user = render_prompt("judge", qas=_qa_view(trajectory, sample))
    reply, usage = await chat.complete_json("judge", system, user, images, SCHEMAS["judge"], JudgeReply, model=model)
    return reply.score, usage
