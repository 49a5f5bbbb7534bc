"""One response schema for every teacher call of every sample (issue 31).

OpenAI places a structured-output schema in front of the system message when it caches a prompt, so a
schema that changed from task to task (step, reflection, final answer, caption) would start every call
on a new prefix. `TEACHER_REPLY` is the same for all of them: `{"reply": <one of the tasks' objects>}`
(strict mode allows `anyOf` below the root only). The task text says which object to write; the
chat client unwraps `reply` (`unwrap_reply`) and each task still validates its own reply model
(`generation.teachers.replies`), which also accepts the bare object a plain-JSON server returns.

The step object's `operators` enum lists every tool the teacher knows (the prompt says which are
available for the question), so the schema does not change between questions or samples either.
"""
from __future__ import annotations

from typing import Any

from generation.teachers.prompts import TOOL_DESCRIPTIONS
from generation.teachers.replies import SCHEMAS, step_schema

TEACHER_REPLY_NAME = "teacher_reply"


def _variant(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "title"}


_STRINGS = {"type": "array", "items": {"type": "string"}}
CAPTION_OBJECT: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["scene_graph", "caption"],
    "properties": {
        "scene_graph": {
            "type": "object", "additionalProperties": False, "required": ["objects", "attributes", "relationships"],
            "properties": {
                "objects": _STRINGS,
                "attributes": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["object", "values"],
                    "properties": {"object": {"type": "string"}, "values": _STRINGS}}},
                "relationships": {"type": "array", "items": _STRINGS},
            }},
        "caption": {"type": "string"},
    },
}

TEACHER_REPLY: dict[str, Any] = {
    "title": TEACHER_REPLY_NAME, "type": "object", "additionalProperties": False, "required": ["reply"],
    "properties": {"reply": {"anyOf": [
        _variant(step_schema(list(TOOL_DESCRIPTIONS))),
        _variant(SCHEMAS["reflection_math"]),
        _variant(SCHEMAS["reflection_general"]),
        _variant(SCHEMAS["final_answer"]),
        CAPTION_OBJECT,
    ]}},
}


def unwrap_reply(value: Any) -> Any:
    """The task's object inside `{"reply": {...}}`; anything else as it is."""
    if isinstance(value, dict) and set(value) == {"reply"} and isinstance(value["reply"], dict):
        return value["reply"]
    return value


def caption_for_operator(value: Any) -> Any:
    """A caption reply in the image_caption operator's own shape: `attributes` as {object: [values]}."""
    value = unwrap_reply(value)
    graph = value.get("scene_graph") if isinstance(value, dict) else None
    if isinstance(graph, dict) and isinstance(graph.get("attributes"), list):
        attributes: dict[str, list] = {}
        for item in graph["attributes"]:
            if isinstance(item, dict) and isinstance(item.get("object"), str):
                values = item.get("values")
                attributes.setdefault(item["object"], []).extend(values if isinstance(values, list) else [values])
        value = {**value, "scene_graph": {**graph, "attributes": attributes}}
    return value
