"""The RR loop: a model tuned on RR rows reasons in steps and the runtime answers each step.

Per question, exactly the layout of an RR row (DESIGN §5, `generation.dialogue_format`): the RR system
prompt; the question + " Please start your reasoning." with the images; then per assistant step
(parsed by `parse_step`) the user turn the rows use: the named operators' and RAG's results
(`render_results_turn`: "Here are ocr results from the previous step:-ocr information: … Please
continue your reasoning."), or no results, or the reflection turn; at `<SIGNAL>end</SIGNAL>` the
summary question, whose reply is the answer. At most `max_steps` steps: a model that has not ended by
then gets the summary question after its last step (status `max_steps`; that step's operators do not
run).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from agent.conversation import Conversation
from agent.endpoint import ChatModel
from agent.tools import AgentTools
from agent.trajectory import MAX_STEPS, UNPARSABLE, AgentResult, AgentStep
from generation.dialogue_format import (
    ANSWER_FORMAT_REMINDER,
    STEP_FORMAT_REMINDER,
    parse_answer,
    parse_step,
    render_first_turn,
    render_summary_turn,
    render_turn_after,
)
from generation.integration import rr_system_prompt
from operators.images import LoadedImage

if TYPE_CHECKING:
    from agent.settings import AgentSettings


async def run_rr(chat: ChatModel, tools: AgentTools, images: Sequence[LoadedImage], question: str,
                 settings: "AgentSettings", result: AgentResult) -> None:
    conversation = Conversation(chat, images, result)
    conversation.add("system", rr_system_prompt())
    conversation.add("user", render_first_turn(question), n_images=len(images))
    session = tools.session(images, question)
    for index in range(settings.max_steps):
        step = await conversation.ask(parse_step, STEP_FORMAT_REMINDER)
        if step is None:
            result.status = UNPARSABLE
            return
        record = AgentStep(thought=step.thought, operators=list(step.operators), rag_query=step.rag_query,
                           signal=step.signal)
        result.steps.append(record)
        if step.signal == "end":
            break
        if index == settings.max_steps - 1:
            result.status = MAX_STEPS
            break
        if step.signal == "continue":
            record.observations, record.skipped = await session.call(step.operators, step.rag_query)
        conversation.add("user", render_turn_after(step.signal, [(o.operator, o.text) for o in record.observations],
                                                   question))
    conversation.add("user", render_summary_turn(question))
    answer = await conversation.ask(parse_answer, ANSWER_FORMAT_REMINDER)
    if answer is None:
        result.status = UNPARSABLE
        return
    result.answer = answer
