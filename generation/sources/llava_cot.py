"""LLaVA-CoT (Xkev/LLaVA-CoT-100k): dialogues whose answers carry a four-stage structured CoT.

Released layout (the Hub dataset card of Xkev/LLaVA-CoT-100k; PKU-YuanGroup/LLaVA-CoT README):
`train.jsonl`, one record per line,
  {id, image: "<dataset>/<path inside it>", conversations: [{from: human|gpt, value}, ...]}
where each gpt value is `<SUMMARY>…</SUMMARY><CAPTION>…</CAPTION><REASONING>…</REASONING>
<CONCLUSION>…</CONCLUSION>`, and images are unpacked from the repo's image archives under the same
relative paths (`sqa/train/8125/image.png`, `chartqa/train/png/…`, `coco/train2017/…`).

Every human/gpt pair becomes one QA of the same Sample (multi-turn records stay one dialogue).
The REASONING text is the native rationale; the answer is the CONCLUSION, reduced to the option
letter or the phrase after "The answer is" when it says so. A gpt turn without a CONCLUSION is a
malformed record (the whole dialogue is quarantined); an empty CONCLUSION is a degenerate pair,
dropped by the `empty_answer` filter while the dialogue keeps its other pairs.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from generation.answers import strip_added_period
from generation.schema import QA, Sample
from generation.sources.base import (
    Deferred, ImageFolder, Located, SourceConfig, SourceError, add_response_constraint, all_dropped,
    choice_letter, degenerate_reason, dropped_meta, field_text, indexed_jsonl, local_root,
    parse_listed_choices, qa_meta, quarantine, require, sample_id, usable, RecordIndex,
)

SOURCE = "llava_cot"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
TRAIN_FILE = "train.jsonl"
FIELDS = {"id": "id", "image": "image", "conversations": "conversations", "role": "from", "text": "value",
          "human": "human", "gpt": "gpt"}
TAGS = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")
# The first path component of `image` names the origin dataset; it is the subset. Which of them are
# math-like is our reading of the LLaVA-CoT paper's source list (GeoQA+, CLEVR-Math), not confirmed
# folder names.
MATH_SUBSETS = {"geoqa+", "GeoQA+", "CLEVR-Math", "clevr-math", "MathV360K"}
HUB_FILES = [TRAIN_FILE]
ID_SCHEME = "llava_cot-1"  # bump when `_sid` changes: record indexes made under the old rule are then ignored  # the Hub repo ships images as split zip parts: unpack them next to train.jsonl
# ---------------------------------------------------------------------------------------------------

_ANSWER_IS = re.compile(r"\b(?:the\s+)?(?:correct\s+|final\s+)?answer\s+is\s*:?\s*(.+?)\s*$", re.I | re.S)


def read(cfg: SourceConfig, index: Optional[RecordIndex] = None) -> Iterator[Located]:
    root = local_root(cfg, HUB_FILES)
    path = root / TRAIN_FILE
    if not path.is_file():
        raise SourceError(f"{SOURCE}: {TRAIN_FILE} not found under {root} (Xkev/LLaVA-CoT-100k's layout: "
                          f"{TRAIN_FILE} beside the unpacked image folders)")
    images = ImageFolder.of(cfg, root)
    for line, sid, load in indexed_jsonl(path, _sid, index, ID_SCHEME):
        yield Located(f"{TRAIN_FILE}: line {line}",
                      Deferred(sid, lambda: _to_sample(usable(load(), sid), sid, images, cfg.drop_qas)))


def _sid(line: int, rec: Any) -> str:
    if not isinstance(rec, dict):
        return sample_id(SOURCE, "unknown", f"line-{line}")
    image = field_text(rec, FIELDS["image"])
    subset = _first_part(image) if image else "unknown"
    return sample_id(SOURCE, subset, field_text(rec, FIELDS["id"]) or f"line-{line}")


def _first_part(path: str) -> str:
    """`Path(path).parts[0]` without building a Path (read for every record, finished ones included)."""
    if path.startswith("/"):
        return "/"
    return next((part for part in path.split("/") if part not in ("", ".")), "unknown")


def _to_sample(rec: dict[str, Any], sid: str, images: ImageFolder, filters: list[str]) -> Sample:
    require(rec, FIELDS["id"], sid)
    subset = sid.split("/")[1]
    turns = require(rec, FIELDS["conversations"], sid)
    qas: list[QA] = []
    dropped: list[str] = []
    for k in range(0, len(turns) - 1, 2):
        human, gpt = turns[k], turns[k + 1]
        if human.get(FIELDS["role"]) != FIELDS["human"] or gpt.get(FIELDS["role"]) != FIELDS["gpt"]:
            raise quarantine(sid, f"turns {k} and {k + 1} are not a human/gpt pair")
        qa = _to_qa(sid, k // 2, str(human[FIELDS["text"]]), str(gpt[FIELDS["text"]]), subset)
        reason = degenerate_reason(qa.question, qa.answer, filters)
        if reason:
            dropped.append(reason)
        else:
            qas.append(qa)
    if not qas:
        raise all_dropped(sid, dropped) if dropped else quarantine(sid, "no human/gpt pair in conversations")
    image = images.file(sid, require(rec, FIELDS["image"], sid))
    return Sample(id=sid, source=SOURCE, subset=subset, split=None, images=[image], qas=qas,
                  meta={"math": any(q.meta["math"] for q in qas), **dropped_meta(dropped)})


def _to_qa(sid: str, turn: int, human: str, gpt: str, subset: str) -> QA:
    question = human.replace("<image>", "").strip()
    parts = {tag: _tag(gpt, tag) for tag in TAGS}
    conclusion = parts["CONCLUSION"]
    if not question or conclusion is None:
        problem = "empty question" if not question else "gpt answer has no <CONCLUSION>"
        raise quarantine(sid, f"turn {turn}: {problem}")
    choices = parse_listed_choices(question)
    answer = _short_answer(conclusion) if conclusion else ""
    if choices and answer:
        answer = choice_letter(answer, choices) or answer
    return QA(question=add_response_constraint(question, answer, choices), answer=answer, choices=choices,
              source_rationale=parts["REASONING"] or None,
              meta=qa_meta(answer, math=subset in MATH_SUBSETS, summary=parts["SUMMARY"] or None,
                           caption=parts["CAPTION"] or None, conclusion=conclusion or None))


def _tag(text: str, tag: str) -> Optional[str]:
    """The text inside `<TAG>…</TAG>` ("" when it is empty), or None when the tag is absent."""
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return m.group(1).strip() if m else None


def _short_answer(conclusion: str) -> str:
    """'The answer is B.' -> 'B' (the sentence's period goes, one that belongs to the answer stays:
    'The answer is 2:10 P.M.' -> '2:10 P.M.'); '(C)' -> 'C'; anything else is kept as written."""
    m = _ANSWER_IS.search(conclusion)
    answer = strip_added_period(m.group(1)) if m else conclusion.strip()
    paren = re.fullmatch(r"\(([A-Z])\)", answer.strip())
    return paren.group(1) if paren else answer.strip()
