"""The teacher's prompts, laid out so that a provider's prompt cache can reuse them (issue 31).

Every teacher call of a sample is one conversation that only grows (`Turns`):

1. the system text, `generation/prompts/teacher_system.j2`: ONE short text for every task (rationale step,
   general and math reflection, final answer, caption), the same for every call of every sample: only
   what every task needs (each token of it is in every call; `teacher_replies.txt` follows it when the
   endpoint takes no response schema);
2. the images (added by the chat client);
3. the question's context, `teacher_context.j2`: the tools the agent may call, the earlier questions of
   the dialogue, the question and its choices;
4. the steps so far, one text each (`teacher_step.j2`), appended in order: a later call shows exactly
   what an earlier one showed, then its new steps;
5. last, what differs per task, `task_<name>.j2`, whose first line is `Task: <name>`: the task's rules,
   the standard answer (rationale step and reflections only; the final answer never sees it), the
   reference solution (rationale step only), the instruction. A rule here is paid in full once per call
   of its task; in the shared prefix it would be paid (at the cached price) in every call of the sample.

So call k's messages start with call k-1's messages less its task text, and a provider that caches
prefixes (OpenAI from 1,024 tokens, vLLM, SGLang) bills the shared part as cached. The teacher sees
everything the earlier per-task prompts showed it (tests/test_prompt_prefix.py compares them).

`render_prompt(name, **vars) -> (system, user)` is the flat view (the user text joined); the judge keeps
its own `judge.j2` ([system]/[user]). An operator result is clipped to `MAX_OBSERVATION_CHARS` in a
prompt (the rows keep it whole).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
TOOL_DESCRIPTIONS = {  # one short line each: every call about the question carries them
    "image_caption": "a scene graph of the image (objects, attributes, relationships), then a concise caption.",
    "ocr": "the text in the image, line by line, with positions.",
    "label_bbox": "boxes, normalised [x1, y1, x2, y2], of the objects named in \"labels\".",
    "face_detection": "boxes of human faces, in pixel coordinates.",
}
MAX_OBSERVATION_CHARS = 4000   # one operator result as the teacher sees it
TEACHER_TASKS = ("rationale_step", "reflection_general", "reflection_math", "final_answer")
TASK_LINE = "Task: "  # the first line of every task text: `Task: <name>`


@dataclass(frozen=True)
class Turns:
    """One teacher call's text, in the order it is sent: `system`, (images), `context`, `steps`, `task`."""

    system: str
    context: str
    steps: tuple[str, ...]
    task: str

    def user_texts(self) -> list[str]:
        return [self.context, *self.steps, self.task]

    def user_text(self) -> str:
        return "\n".join(self.user_texts())

    def chars(self) -> int:
        return len(self.system) + sum(len(text) for text in self.user_texts())


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


@lru_cache(maxsize=1)
def teacher_system() -> str:
    """The system text of every teacher call (no variables: rendered once)."""
    return _tidy(_template("teacher_system").render())


@lru_cache(maxsize=1)
def teacher_replies() -> str:
    """Every task's reply object in words (`teacher_replies.txt`): what the chat client appends to the system
    text when the endpoint takes no response schema (json_object or plain JSON), the same for every task."""
    return _tidy((PROMPTS / "teacher_replies.txt").read_text())


def render_step(step: Any, index: int) -> str:
    """Step `index` (1-based) as every call that shows it shows it."""
    return _tidy(_template("teacher_step").render(step=step, index=index))


def render_turns(task: str, *, question: str, choices: Sequence[str], answer: str,
                 source_rationale: Optional[str], steps: Sequence[Any], previous: Sequence[Any],
                 operators: Sequence[str] = (), rag: bool = False,
                 tool_descriptions: Optional[dict[str, str]] = None, feedback: Optional[str] = None,
                 **_: Any) -> Turns:
    """The conversation of one teacher call for `task` (one of `TEACHER_TASKS`)."""
    if task not in TEACHER_TASKS:
        raise ValueError(f"unknown teacher task {task!r}")
    context = _template("teacher_context").render(
        operators=list(operators), rag=rag, tool_descriptions=tool_descriptions or TOOL_DESCRIPTIONS,
        previous=list(previous), question=question, choices=list(choices))
    task_text = _template(f"task_{task}").render(answer=answer, source_rationale=source_rationale,
                                                 steps=list(steps), feedback=feedback)
    return Turns(system=teacher_system(), context=_tidy(context),
                 steps=tuple(render_step(step, i) for i, step in enumerate(steps, 1)), task=_tidy(task_text))


def render_prompt(name: str, **variables: Any) -> tuple[str, str]:
    """(system, user) text: a teacher task's `Turns` flattened, or `generation/prompts/{name}.j2` split at
    its `[user]` line (the judge)."""
    if name in TEACHER_TASKS:
        turns = render_turns(name, **variables)
        return turns.system, turns.user_text()
    text = _template(name).render(**variables)
    if "[user]" not in text:
        raise ValueError(f"prompt template {name}.j2 has no [user] section")
    system, user = text.split("[user]", 1)
    system = system.replace("[system]", "", 1)
    return _tidy(system), _tidy(user)


_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", text).strip()
