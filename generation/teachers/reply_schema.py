"""One response schema for every teacher call of every sample (issue 31), kept small.

OpenAI places a structured-output schema in front of the system message when it caches a prompt, so a
schema that changed from task to task (step, reflection, final answer, caption) would start every call
on a new prefix. `TEACHER_REPLY` is the same for all of them: `{"reply": <one of the tasks' objects>}`
(strict mode allows `anyOf` below the root only). The task text says which object to write; the
chat client unwraps `reply` (`unwrap_reply`) and each task still validates its own reply model
(`generation.teachers.replies`), which also accepts the bare object a plain-JSON server returns.

Every call carries the schema, so it is as small as strict mode allows (it was 472 prompt tokens at
4 characters a token; now about 300): no titles, a step's `rag` is its search query or null, the two
reflections share one object (`{"reason", "thought"}`; the cheating check writes `"thought": null`), a
caption is flat (`objects`, `attributes` as lists `[object, attribute, ...]`, `relationships`,
`caption`; `caption_for_operator` turns it back into the operator's `{"scene_graph", "caption"}`).
The step object's `operators` enum lists every tool the teacher knows (the prompt says which are
available for the question), so the schema does not change between questions or samples either.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from generation.teachers.prompts import TOOL_DESCRIPTIONS

TEACHER_REPLY_NAME = "teacher_reply"

_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_TEXTS = {"type": "array", "items": _TEXT}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A strict object: every property required, no others."""
    return {"type": "object", "additionalProperties": False, "required": list(properties), "properties": properties}


STEP_OBJECT = _object({
    "thought": _TEXT,
    "operators": {"type": "array", "items": {"type": "string", "enum": list(TOOL_DESCRIPTIONS)}},
    "labels": _TEXTS,
    "rag": _TEXT_OR_NULL,  # the search query, or null (`StepReply` reads both this and {"needed", "query"})
    "next_action": {"type": "string", "enum": ["continue", "final_answer"]},
})
REASON_OBJECT = _object({"reason": _TEXT_OR_NULL, "thought": _TEXT_OR_NULL})  # both reflections
ANSWER_OBJECT = _object({"answer": _TEXT})
CAPTION_OBJECT = _object({  # the scene graph's parts at the top level, caption last
    "objects": _TEXTS, "attributes": {"type": "array", "items": _TEXTS},
    "relationships": {"type": "array", "items": _TEXTS}, "caption": _TEXT,
})

TEACHER_REPLY: dict[str, Any] = {
    "title": TEACHER_REPLY_NAME, **_object({"reply": {"anyOf": [STEP_OBJECT, REASON_OBJECT, ANSWER_OBJECT,
                                                                CAPTION_OBJECT]}}),
}


# Each task's own object, for servers that do not bill the schema as prompt tokens (below).
_TASK_OBJECTS = {"rationale_step": STEP_OBJECT, "reflection_general": REASON_OBJECT, "reflection_math": REASON_OBJECT,
                 "final_answer": ANSWER_OBJECT, "caption": CAPTION_OBJECT}


def task_reply_schema(task: str, operators: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """`{"reply": <this task's object>}`: the same wrapper as `TEACHER_REPLY` with only the task's object.

    For a server that constrains decoding with the schema instead of reading it as prompt text (llama.cpp,
    vLLM, SGLang), the schema costs no cached prefix, and the shared `anyOf` lets a small model write
    another task's object (SmolLM2 answered a step with `{"reason": ...}`); there the task's own schema is
    used. OpenAI (and Azure OpenAI) put the schema in the prompt, so they get `TEACHER_REPLY`."""
    obj = _TASK_OBJECTS.get(task)
    if obj is None:
        return TEACHER_REPLY
    if obj is STEP_OBJECT and operators is not None:  # the step's enum: the tools offered to this question
        enum = {"type": "array", "items": {"type": "string", "enum": [n for n in operators if n in TOOL_DESCRIPTIONS]}}
        obj = _object({**STEP_OBJECT["properties"], "operators": enum})
    return {"title": TEACHER_REPLY_NAME, **_object({"reply": obj})}


def unwrap_reply(value: Any) -> Any:
    """The task's object inside `{"reply": {...}}`; anything else as it is."""
    if isinstance(value, dict) and set(value) == {"reply"} and isinstance(value["reply"], dict):
        return value["reply"]
    return value


def caption_for_operator(value: Any) -> Any:
    """A caption reply in the image_caption operator's own shape: `{"scene_graph": {"objects",
    "attributes": {object: [values]}, "relationships"}, "caption"}`, from the schema's flat object (its
    attributes as `[object, value, ...]` lists) or from the operator's shape as a plain-JSON server wrote it."""
    value = unwrap_reply(value)
    if not isinstance(value, dict):
        return value
    if "scene_graph" not in value and any(key in value for key in ("objects", "attributes", "relationships")):
        graph = {key: value[key] for key in ("objects", "attributes", "relationships") if key in value}
        value = {"scene_graph": graph, **{k: v for k, v in value.items() if k not in graph}}
    graph = value.get("scene_graph")
    if isinstance(graph, dict) and isinstance(graph.get("attributes"), list):
        attributes: dict[str, list] = {}
        for item in graph["attributes"]:
            if isinstance(item, list) and item and isinstance(item[0], str):
                attributes.setdefault(item[0], []).extend(item[1:])
            elif isinstance(item, dict) and isinstance(item.get("object"), str):
                values = item.get("values")
                attributes.setdefault(item["object"], []).extend(values if isinstance(values, list) else [values])
        value = {**value, "scene_graph": {**graph, "attributes": attributes}}
    return value
