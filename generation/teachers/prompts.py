"""The teacher's prompts: `generation/prompts/{task}.j2` rendered into (system, user) text.

Shared by the teacher (rationale step, general and math reflection, final answer) and the judge. An
operator result is clipped to `MAX_OBSERVATION_CHARS` in a prompt (the rows keep it whole); the tool
descriptions are what the rationale prompt offers the teacher, one per image operator.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
TOOL_DESCRIPTIONS = {
    "image_caption": "describes the image: a scene graph (objects, attributes, relationships), then a concise caption.",
    "ocr": "reads the text in the image, line by line, with positions.",
    "label_bbox": "finds the objects named in \"labels\" and returns their boxes as normalised [x1, y1, x2, y2].",
    "face_detection": "finds human faces and returns their boxes in pixel coordinates.",
}
MAX_OBSERVATION_CHARS = 4000   # one operator result as the teacher sees it


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROMPTS)), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                             auto_reload=False)  # no stat() per render

    def clip(text: Any, limit: int = MAX_OBSERVATION_CHARS) -> str:
        text = str(text)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    env.filters["clip"] = clip
    return env


@lru_cache(maxsize=None)
def _template(name: str):
    return _environment().get_template(f"{name}.j2")  # jinja's own cache takes a lock and an LRU step per call


def render_prompt(name: str, **variables: Any) -> tuple[str, str]:
    """(system, user) text of `generation/prompts/{name}.j2`, split at its `[user]` line."""
    text = _template(name).render(**variables)
    if "[user]" not in text:
        raise ValueError(f"prompt template {name}.j2 has no [user] section")
    system, user = text.split("[user]", 1)
    system = system.replace("[system]", "", 1)
    return _tidy(system), _tidy(user)


_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", text).strip()
