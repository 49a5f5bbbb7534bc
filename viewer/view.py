"""What the page draws: a list item per row (`summary`) and a dialogue as labelled turns (`dialogue_view`).

Both are plain JSON-able dicts built from `viewer.parsed.Dialogue` and the row's structured columns;
every string in them is row data that the page inserts as text. Turn kinds:

- `question` (user): the question, with the first question's image count; ORR adds the operator
  outputs of its user turn as `cards`;
- `step` (assistant): labelled blocks THOUGHT / OPERATOR / RAG / SIGNAL; `mark` is `reflection` for
  the step that asks for a reflection and `repaired` for the step that follows it; both carry `origin`,
  the row's `reflection.origin` (`check`: a check found the teacher's defect; `staged`: the defect was
  written on purpose, then found);
- `results` (user): one card per operator result, naming the operator and its backend (as the row
  records it, `steps[*].observations[*].backend`; for older rows without it, `backend_of`: the run's
  operator cache, `viewer.workfolder`);
- `note` (user): a turn with no results (`no_results`), the reflection request (`reflection_request`)
  or the request to summarise (`summary_request`), as written in the row;
- `answer` (assistant): the short answer beside the reference answer and the verification result
  (ORR: with the one-turn THOUGHT block);
- `raw`: a row whose messages are not the RR/ORR layout (`FormatError`) is shown message by message,
  with the reason in `layout_error`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from generation.dialogue_format import RRStep
from viewer.parsed import Dialogue, FormatError, Question, message_text, parse_row

BackendOf = Callable[[str, str], Optional[str]]  # (operator, result text) -> backend name
ImageUrl = Callable[[int, str], str]  # (image index, "thumb" | "full") -> URL


def operators_used(steps: list[dict[str, Any]]) -> list[str]:
    """Operators the row's steps called, `rag` for a retrieval query (as the card counts them), sorted."""
    used = {op for s in steps or () for op in s.get("operators") or ()}
    if any(s.get("rag_query") for s in steps or ()):
        used.add("rag")
    return sorted(used)


def evidence_kind(meta: dict[str, Any]) -> Optional[str]:
    """`meta.evidence` as one name (a string, a struct's `kind`, a list's kinds joined), None when absent."""
    value = meta.get("evidence")
    if isinstance(value, dict):
        value = value.get("kind")
    elif isinstance(value, (list, tuple)):
        value = "+".join(sorted({str(v.get("kind") if isinstance(v, dict) else v) for v in value if v})) or None
    return str(value) if value else None


def reflection_origin(reflection: dict[str, Any]) -> Optional[str]:
    """`check` or `staged` for a row with a reflection (None without one, `unknown` when not recorded)."""
    if (reflection.get("kind") or "none") == "none":
        return None
    return reflection.get("origin") or "unknown"


def summary(row: dict[str, Any], split: str, image_url: Optional[ImageUrl] = None) -> dict[str, Any]:
    """One list item; `row` needs the list columns (see `viewer.store.LIST_COLUMNS`). `grounded`: the
    row's `meta.grounded` (None: not recorded), `evidence` its evidence kind, `origin` its reflection's."""
    meta = row.get("meta") or {}
    reflection = row.get("reflection") or {}
    teacher = row.get("teacher") or {}
    n_images = len(row.get("images") or ())
    return {
        "id": row["id"], "source": row.get("source"), "subset": row.get("subset"), "split": split,
        "format": row.get("format"), "question": row.get("question") or "", "answer": row.get("answer") or "",
        "reflection": reflection.get("kind") or "none", "verified": meta.get("verified"),
        "judge_score": meta.get("judge_score"), "grounded": meta.get("grounded"), "evidence": evidence_kind(meta),
        "origin": reflection_origin(reflection), "operators": operators_used(row.get("steps") or []),
        "model": teacher.get("model"), "n_images": n_images,
        "thumb": image_url(0, "thumb") if image_url and n_images else None,
    }


def _step_blocks(step: RRStep) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"label": "THOUGHT", "text": step.thought}]
    if step.operators:
        blocks.append({"label": "OPERATOR", "items": list(step.operators)})
    if step.rag_query:
        blocks.append({"label": "RAG", "text": step.rag_query})
    blocks.append({"label": "SIGNAL", "text": step.signal})
    return blocks


def _cards(observations, backend_of: BackendOf) -> list[dict[str, Any]]:
    return [{"operator": op, "backend": backend_of(op, text), "text": text} for op, text in observations]


def _answer_turn(question: Question, index: int, row: dict[str, Any], blocks: Optional[list] = None) -> dict:
    meta = row.get("meta") or {}
    # The row keeps the reference answer of its first question only; `verified` covers every question.
    return {"role": "assistant", "kind": "answer", "answer": question.answer, "blocks": blocks or [],
            "reference": (row.get("answer") or "") if index == 0 else None, "verified": meta.get("verified")}


def _rr_turns(dialogue: Dialogue, row: dict[str, Any], backend_of: BackendOf) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    origin = reflection_origin(row.get("reflection") or {})
    for index, question in enumerate(dialogue.questions):
        turns.append({"role": "user", "kind": "question", "text": question.question, "images": question.n_images})
        after_reflection = False
        for step, turn_after in zip(question.steps, question.turns_after):
            mark = "reflection" if step.signal == "reflection" else ("repaired" if after_reflection else None)
            turns.append({"role": "assistant", "kind": "step", "mark": mark, "blocks": _step_blocks(step),
                          "origin": origin if mark else None})
            after_reflection = step.signal == "reflection"
            if step.signal == "continue" and step.observations:
                turns.append({"role": "user", "kind": "results", "cards": _cards(step.observations, backend_of)})
            else:
                note = {"continue": "no_results", "reflection": "reflection_request"}.get(step.signal, "summary_request")
                turns.append({"role": "user", "kind": "note", "note": note, "text": turn_after})
        turns.append(_answer_turn(question, index, row))
    return turns


def _orr_turns(dialogue: Dialogue, row: dict[str, Any], backend_of: BackendOf) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for index, question in enumerate(dialogue.questions):
        turns.append({"role": "user", "kind": "question", "text": question.question, "images": question.n_images,
                      "cards": _cards(question.api_outputs, backend_of)})
        turns.append(_answer_turn(question, index, row, [{"label": "THOUGHT", "text": question.thought or ""}]))
    return turns


def recorded_backends(row: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(operator, result text) → the backend the row records for it (rows before the field have none)."""
    return {(o.get("operator") or "", o.get("text") or ""): o["backend"]
            for s in row.get("steps") or () for o in s.get("observations") or () if o.get("backend")}


def dialogue_view(row: dict[str, Any], split: str, *, backend_of: Optional[BackendOf] = None,
                  image_url: Optional[ImageUrl] = None, dialogue: Optional[Dialogue] = None) -> dict[str, Any]:
    """The whole dialogue of one row (all columns) as the page draws it. A result's backend is the
    row's own record of it, else `backend_of(operator, text)` (older rows), else unknown."""
    recorded = recorded_backends(row)

    def backend(op: str, text: str) -> Optional[str]:
        return recorded.get((op, text)) or (backend_of(op, text) if backend_of else None)

    teacher = row.get("teacher") or {}
    meta = row.get("meta") or {}
    reflection = row.get("reflection") or {}
    n_images = len(row.get("images") or ())
    out: dict[str, Any] = {
        **summary(row, split, image_url),
        "images": [{"thumb": image_url(i, "thumb"), "full": image_url(i, "full")} if image_url else {}
                   for i in range(n_images)],
        "teacher": {k: teacher.get(k) for k in ("model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s")},
        "reflection_reason": reflection.get("reason") or "",
        "operators_available": list(meta.get("operators_available") or ()),
        "engine_version": row.get("engine_version"),
        "system": None, "layout_error": None,
    }
    try:
        dialogue = dialogue or parse_row(row)
    except FormatError as exc:
        out["layout_error"] = str(exc)
        out["turns"] = [{"role": m.get("role"), "kind": "raw", "text": message_text(m)} for m in row.get("messages") or ()]
        return out
    out["system"] = dialogue.system
    out["turns"] = (_rr_turns if dialogue.format == "rr" else _orr_turns)(dialogue, row, backend)
    return out
