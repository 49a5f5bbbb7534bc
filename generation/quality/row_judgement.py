"""The audit's judgement of one row, and the counts over rows (per source, subset, or in total).

Every judgement comes from the definitions (`generation.quality.definitions`: grounded, leaked;
`generation.quality.evidence_kinds`: what the answer rests on, and a reasoning that admits it could not
confirm the answer); dialogues are read by the one strict parser, `generation.dialogue_format`. The
shard scan (`generation.quality.shard_scan`) calls `row_quality` once per row and adds it to a
`GroupStats`; nothing here reads files.

Per row: verified, grounded by tool evidence (every question), grounded only by the source's own
rationale, leaked (an unrepaired leak), admits no evidence (a question's last thought says it could not
confirm the answer, and an answer follows), the repair it shows (a reflection that reached a row was
accepted), and for ORR rows the compression's defects: a sentence repeated within one turn, a step a
reflection replaced still in the thought (`generation.final_trajectory.replaced_steps`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from generation.quality.definitions import QuestionQuality, judge_dialogue, orr_views, question_choices
from generation.quality.evidence_judgement import question_evidence, row_kind
from generation.sentences import split_sentences

FAILING_KINDS = ("not_verified", "not_grounded", "admits_no_evidence", "leaked", "repeated_sentence",
                 "replaced_step_in_orr", "exact_duplicate", "near_duplicate", "unparsable")


@dataclass
class RowQuality:
    id: str
    source: str
    subset: str
    format: str = "rr"
    questions: int = 0
    verified: Optional[bool] = None
    grounded: bool = False  # by tool evidence, every question
    evidence: str = "none"  # the weakest question's kind: tool | source_rationale | none
    admits_no_evidence: bool = False
    leaked: bool = False
    leaks_repaired: int = 0
    leak_reason: str = ""
    repeated_sentence: str = ""  # ORR: a sentence said twice within one turn
    replaced_in_orr: str = ""  # ORR: the thought of a step a reflection replaced
    reflection_kind: str = "none"
    reflection_origin: Optional[str] = None
    math_questions: Optional[int] = None
    steps: int = 0
    turns: int = 0
    tokens: int = 0
    images: int = 0
    operators: tuple[str, ...] = ()  # every call (rag: every retrieval)
    judge_score: Optional[float] = None
    parsed: bool = True
    content: str = ""  # the dialogue's questions, thoughts, results and answers (near-duplicates)
    text_key: int = 0  # xxh3-128 of every message text (exact duplicates, with the images)


@dataclass(frozen=True)
class _Question:
    question: str
    steps: tuple
    answer: str


def _question_views(row: dict[str, Any]) -> list[Any]:
    """The row's questions as `.question/.steps/.answer` objects, through the strict parser."""
    from generation.dialogue_format import parse_orr, parse_rr

    if row["format"] == "orr":  # one reading of ORR, the integration guard's too (`orr_views`)
        return [_Question(q.question, orr_views(q.thought, q.api_outputs), q.answer)
                for q in parse_orr(row["messages"]).questions]
    return list(parse_rr(row["messages"]).questions)


def _verified(row: dict[str, Any], questions: list[Any]) -> Optional[bool]:
    """`meta.verified` (the engine's check of every question, against references rows do not keep);
    else the verifier on the first question, whose reference the row keeps."""
    from generation.schema import QA
    from generation.verify import answers_match

    meta = row.get("meta") or {}
    if meta.get("verified") is not None:
        return bool(meta["verified"])
    if not questions or not row.get("answer"):
        return None
    qa = QA(question=row["question"], answer=row["answer"], choices=question_choices(row["question"]))
    return answers_match(questions[0].answer, qa)


def _content(questions: list[Any]) -> str:
    parts = []
    for q in questions:
        parts.append(q.question)
        for step in q.steps:
            parts.append(step.thought)
            parts += [text for _, text in getattr(step, "observations", ())]
        parts.append(q.answer)
    return "\n".join(parts)


_MIN_SENTENCE_WORDS = 4  # "Yes." twice is no repetition worth a flag


def repeated_sentence(text: str) -> str:
    """The first sentence `text` says twice (compared case- and space-insensitively), or ''."""
    seen: set[str] = set()
    for sentence in split_sentences(text.strip()):
        key = " ".join(sentence.lower().split())
        if len(key.split()) < _MIN_SENTENCE_WORDS:
            continue
        if key in seen:
            return sentence.strip()
        seen.add(key)
    return ""


def replaced_step_in(thoughts: str, steps: list[dict[str, Any]]) -> str:
    """The thought of a step a reflection replaced (`generation.final_trajectory`) that `thoughts` (an ORR
    row's) still says, unless the final trajectory says the same; else ''."""
    from generation.final_trajectory import final_steps, replaced_steps

    replaced = replaced_steps(steps)
    if not replaced:
        return ""
    kept = {" ".join((s.get("thought") or "").split()) for s in final_steps(steps)}
    said = " ".join(thoughts.split())
    for index in sorted(replaced):
        thought = " ".join((steps[index].get("thought") or "").split())
        if steps[index].get("signal") != "reflection" and thought and thought not in kept and thought in said:
            return thought
    return ""


def row_quality(row: dict[str, Any], tokens: int = 0) -> RowQuality:
    """The audit's reading of one row (`tokens`: its text tokens, counted per batch by the caller)."""
    import xxhash

    meta = row.get("meta") or {}
    reflection = row.get("reflection") or {}
    operators: list[str] = []
    for step in row.get("steps") or []:
        operators += list(step.get("operators") or [])
        if step.get("rag_query"):
            operators.append("rag")
    out = RowQuality(id=row["id"], source=row["source"], subset=row["subset"], format=row.get("format") or "rr",
                     tokens=tokens, reflection_kind=reflection.get("kind") or "none",
                     reflection_origin=reflection.get("origin"), math_questions=meta.get("math_questions"),
                     judge_score=meta.get("judge_score"), operators=tuple(operators))
    texts = [b.get("text") or "" for m in row["messages"] for b in m["content"] if b.get("type") == "text"]
    out.images = sum(1 for m in row["messages"] for b in m["content"] if b.get("type") == "image")
    out.turns = sum(1 for m in row["messages"] if m["role"] == "assistant")
    out.text_key = xxhash.xxh3_128_intdigest("\x00".join(texts).encode("utf-8"))
    try:
        questions = _question_views(row)
    except ValueError:  # FormatError: counted, never fatal
        out.parsed = False
        out.verified = (meta.get("verified") if meta.get("verified") is not None else None)
        return out
    verdicts: list[QuestionQuality] = judge_dialogue(questions)
    kinds = question_evidence([(q.question, q.steps, q.answer, None) for q in questions],
                              grounded=[v.grounded for v in verdicts])
    out.questions = len(questions)
    out.steps = sum(len(q.steps) for q in questions)
    out.verified = _verified(row, questions)
    out.grounded = all(v.grounded for v in verdicts)
    out.evidence = row_kind([k.kind for k in kinds]) or "none"
    out.admits_no_evidence = any(k.admits_no_evidence for k in kinds)
    out.leaked = any(v.leaked for v in verdicts)
    out.leaks_repaired = sum(1 for v in verdicts for leak in v.leaks if leak.repaired)
    reasons = [leak.reason for v in verdicts for leak in v.leaks if not leak.repaired]
    out.leak_reason = reasons[0] if reasons else ""
    if out.format == "orr":
        thoughts = [" ".join(s.thought for s in q.steps if s.thought) for q in questions]
        out.repeated_sentence = next((s for s in map(repeated_sentence, thoughts) if s), "")
        out.replaced_in_orr = replaced_step_in(" ".join(thoughts), list(row.get("steps") or []))
    out.content = _content(questions)
    return out


def failings(q: RowQuality) -> list[tuple[str, str]]:
    """(failing kind, why) of one row, for the report's examples."""
    if not q.parsed:
        return [("unparsable", "the dialogue does not parse as its format")]
    out = []
    if q.verified is False:
        out.append(("not_verified", ""))
    if not q.grounded:
        out.append(("not_grounded", "" if q.evidence == "none" else f"grounded by the {q.evidence.replace('_', ' ')}"))
    if q.admits_no_evidence:
        out.append(("admits_no_evidence", ""))
    if q.leaked:
        out.append(("leaked", q.leak_reason))
    if q.repeated_sentence:
        out.append(("repeated_sentence", q.repeated_sentence[:120]))
    if q.replaced_in_orr:
        out.append(("replaced_step_in_orr", q.replaced_in_orr[:120]))
    return out


# ----------------------------------------------------------------------------------------- groups
@dataclass
class GroupStats:
    """Counts over the dialogues of one source, subset, or the whole dataset (ints and Counters only:
    two readings merge by adding them, `add_counts`)."""

    dialogues: int = 0
    questions: int = 0
    verified: int = 0
    verified_known: int = 0
    grounded: int = 0  # by tool evidence
    grounded_rationale: int = 0  # only by the source's own rationale
    admits_no_evidence: int = 0
    leaked: int = 0
    leaks_repaired: int = 0
    repeated_sentence: int = 0
    replaced_in_orr: int = 0
    unparsable: int = 0
    reflections: Counter = field(default_factory=Counter)  # "kind/origin" -> dialogues
    math_dialogues: int = 0  # dialogues with at least one math question (rows that record it)
    math_reflected: int = 0  # ... of which got a math reflection
    operator_calls: Counter = field(default_factory=Counter)
    operator_dialogues: Counter = field(default_factory=Counter)
    steps: int = 0
    turns: int = 0
    tokens: int = 0
    images: int = 0

    def add(self, q: RowQuality) -> None:
        self.dialogues += 1
        self.questions += q.questions
        self.unparsable += int(not q.parsed)
        if q.verified is not None:
            self.verified_known += 1
            self.verified += int(q.verified)
        self.grounded += int(q.grounded)
        self.grounded_rationale += int(q.parsed and not q.grounded and q.evidence == "source_rationale")
        self.admits_no_evidence += int(q.admits_no_evidence)
        self.leaked += int(q.leaked)
        self.leaks_repaired += q.leaks_repaired
        self.repeated_sentence += int(bool(q.repeated_sentence))
        self.replaced_in_orr += int(bool(q.replaced_in_orr))
        if q.reflection_kind != "none":
            self.reflections[f"{q.reflection_kind}/{q.reflection_origin or 'unrecorded'}"] += 1
        if q.math_questions:
            self.math_dialogues += 1
            self.math_reflected += int(q.reflection_kind == "math")
        self.operator_calls.update(q.operators)
        self.operator_dialogues.update(dict.fromkeys(q.operators, 1))  # once each, in order (ties list in order)
        self.steps += q.steps
        self.turns += q.turns
        self.tokens += q.tokens
        self.images += q.images

    def merge(self, other: "GroupStats") -> None:
        """Add another reading's counts (as adding its dialogues one by one)."""
        for name, value in vars(other).items():
            if isinstance(value, Counter):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    @property
    def repairs(self) -> int:
        """Accepted repairs: dialogues whose reflection reached the row (every such repair was verified)."""
        return sum(self.reflections.values())

    def rate(self, name: str) -> Optional[float]:
        if name == "verified":
            return self.verified / self.verified_known if self.verified_known else None
        return getattr(self, name) / self.dialogues if self.dialogues else None

    def per_dialogue(self, name: str) -> float:
        return getattr(self, name) / self.dialogues if self.dialogues else 0.0

    def reflection_count(self, kind: str, origin: Optional[str] = None) -> int:
        return sum(n for key, n in self.reflections.items()
                   if key.split("/")[0] == kind and (origin is None or key.split("/")[1] == origin))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dialogues": self.dialogues, "questions": self.questions,
            "verified": self.rate("verified"), "grounded": self.rate("grounded"),
            "grounded_rationale": self.rate("grounded_rationale"), "admits_no_evidence": self.rate("admits_no_evidence"),
            "leaked": self.rate("leaked"),
            "counts": {"verified": self.verified, "verified_known": self.verified_known, "grounded": self.grounded,
                       "grounded_rationale": self.grounded_rationale, "admits_no_evidence": self.admits_no_evidence,
                       "leaked": self.leaked, "leaks_repaired": self.leaks_repaired,
                       "repeated_sentence": self.repeated_sentence, "replaced_in_orr": self.replaced_in_orr,
                       "repairs_accepted": self.repairs, "unparsable": self.unparsable},
            "reflections": dict(sorted(self.reflections.items())),
            "reflection_rate": {k: self.reflection_count(k) / self.dialogues if self.dialogues else None
                                for k in ("general", "math")},
            "math_dialogues": self.math_dialogues, "math_reflected": self.math_reflected,
            "operator_calls": dict(self.operator_calls.most_common()),
            "operator_dialogues": dict(self.operator_dialogues.most_common()),
            "per_dialogue": {k: round(self.per_dialogue(k), 3) for k in ("steps", "turns", "tokens", "images")},
        }
