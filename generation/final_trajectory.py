"""The final trajectory: the steps of a dialogue that a reflection did not replace (issue 29, DESIGN §5).

RR shows a defect and its repair: …, the defective step, …, the old end, the reflection step (its
thought names the defect), the repaired step. What the dialogue finally reasons is the repaired
trajectory, and that is what ORR compresses and what the repair is verified on
(`generation.reflection`). A reflection at index r of a question replaces

- the reflection step itself (r),
- the step just before it (r - 1): the old end of the reasoning, whose place the repair takes,
- every earlier step of the same question that the reflection's thought names ("step 1", "steps 2 and
  3", "the first step"): the defect it found. The engine's leak reflection always names the step it
  found (`generation.quality.definitions.judge_question`), and the model-based check is asked to say
  "which step and what is wrong".

Steps are numbered from 1 within their question, as the checks number them. Questions are split
after each `end` step (every question of a dialogue ends with exactly one). Works on a row's `steps`
column (dicts) as well as on engine `Step`s, parsed `RRStep`s and `StepView`s (`.thought`, `.signal`):
the audit, the card and integration all read replaced steps from here, so they agree.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10}
_NAMED = re.compile(r"\bsteps?\s+(\d+(?:\s*(?:,|and|&|or)\s*(?:steps?\s+)?\d+)*)", re.I)
_ORDINAL = re.compile(r"\b(" + "|".join(_ORDINALS) + r")\s+step\b", re.I)


def _get(step: Any, name: str) -> Any:
    return step.get(name) if isinstance(step, dict) else getattr(step, name, None)


def thought_of(step: Any) -> str:
    return _get(step, "thought") or ""


def signal_of(step: Any) -> str:
    return _get(step, "signal") or "continue"


def question_spans(steps: Sequence[Any]) -> list[range]:
    """The index range of each question's steps: a question ends with its `end` step."""
    spans, start = [], 0
    for index, step in enumerate(steps):
        if signal_of(step) == "end":
            spans.append(range(start, index + 1))
            start = index + 1
    if start < len(steps):
        spans.append(range(start, len(steps)))
    return spans


def named_steps(thought: str) -> set[int]:
    """The step numbers (from 1) a reflection's thought names: "step 2", "steps 1 and 3", "the first step"."""
    numbers = {int(n) for match in _NAMED.finditer(thought) for n in re.findall(r"\d+", match.group(1))}
    return numbers | {_ORDINALS[m.group(1).lower()] for m in _ORDINAL.finditer(thought)}


def replaced_in_question(steps: Sequence[Any]) -> set[int]:
    """`replaced_steps` of one question's steps (indices into `steps`)."""
    replaced: set[int] = set()
    for r, step in enumerate(steps):
        if signal_of(step) != "reflection":
            continue
        replaced.add(r)
        if r > 0:
            replaced.add(r - 1)
        replaced |= {n - 1 for n in named_steps(thought_of(step))
                     if 0 < n <= r - 1 and signal_of(steps[n - 1]) != "reflection"}
    return replaced


def replaced_steps(steps: Sequence[Any]) -> set[int]:
    """Indices (into `steps`, a whole dialogue or one question) of the steps a reflection replaced: each
    reflection step, the step just before it and the earlier steps of its question it names."""
    replaced: set[int] = set()
    for span in question_spans(steps):
        replaced |= {span.start + i for i in replaced_in_question([steps[k] for k in span])}
    return replaced


def final_steps(steps: Sequence[Any]) -> list[Any]:
    """`steps` without the replaced ones: the final trajectory that ORR compresses."""
    replaced = replaced_steps(steps)
    return [step for index, step in enumerate(steps) if index not in replaced]
