"""Integration stage: one trajectory → one RR row and one ORR row (DESIGN §5-§6).

`build_rows` is the single place rows are built, and it owns four guarantees:

- every text that enters a row (a model's thought, RAG query, answer and reflection, an operator's
  result, a retrieved passage, a source's question and answer) passes `generation.sanitize.as_data`
  first, so the layouts' tags and chat-template control tokens appear only where the renderer put
  them;
- each text field has a length cap (`integration.max_chars`); a longer one quarantines the sample
  with the field, its length and the cap;
- every rendered row is parsed back by the strict parser of `generation.dialogue_format` and must give
  back exactly what was rendered; a row that does not quarantines the sample (stage `integration`);
- ORR is the compression of the final trajectory (`orr_thought`): no step a reflection replaced, no
  sentence twice in a turn, and it passes the leak definition the audit applies to RR
  (`generation.quality.definitions`), checked once more on the rendered turns (`orr_leaks`).

The turns themselves (tags, fixed sentences) are defined once, in `generation.dialogue_format`.
Messages use the content-block form (`{"type": "text"|"image", "text": ...}`) that transformers chat
templates and TRL read directly; the first user turn holds one image block per image, in order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

from generation.config import TextLimits
from generation.dialogue_format import (  # noqa: F401  (the turn constants are re-exported for callers)
    NO_RESULTS_TURN,
    ORR_API_BLOCK,
    ORR_API_INTRO,
    REFLECTION_TURN,
    SUMMARY_TURN,
    FormatError,
    image_block,
    message,
    parse_orr,
    parse_rr,
    render_first_turn,
    render_orr_question,
    render_orr_reply,
    render_step as _render_step,
    render_turn_after,
    text_block,
)
from generation.quality.evidence_judgement import row_kind, trajectory_evidence
from generation.answers import normalise_answer
from generation.final_trajectory import final_steps
from generation.quality.definitions import Evidence, StepView, judge_dialogue, judge_question, orr_views
from generation.quality.evidence_kinds import is_source_rationale
from generation.sanitize import as_data
from generation.schema import ENGINE_VERSION, QATrajectory, Quarantined, Sample, Step, Trajectory, is_math
from generation.sentences import split_sentences

PROMPTS = Path(__file__).parent / "prompts"
STAGE = "integration"
# An ORR thought "quotes" a RAG result when it shares this many consecutive words with it.
QUOTE_MIN_WORDS = 8


@lru_cache(maxsize=None)
def rr_system_prompt() -> str:
    return (PROMPTS / "rr_system.txt").read_text().strip()


def render_step(step: Step) -> str:
    """`<THOUGHT>…</THOUGHT><OPERATOR>a, b</OPERATOR><RAG>q</RAG><SIGNAL>s</SIGNAL>`; unused tags omitted."""
    return _render_step(step.thought, step.operators, step.rag_query, step.signal)


def _observations(step: Step) -> list[tuple[str, str]]:
    return [(obs.operator, obs.text) for obs in step.observations]


def _turn_after(step: Step, question: str) -> str:
    return render_turn_after(step.signal, _observations(step), question)


def rr_messages(trajectory: Trajectory, n_images: int) -> list[dict[str, Any]]:
    messages = [message("system", text_block(rr_system_prompt()))]
    for index, qa in enumerate(trajectory.qas):
        images = [image_block() for _ in range(n_images)] if index == 0 else []
        messages.append(message("user", *images, text_block(render_first_turn(qa.question))))
        for step in qa.steps:
            messages.append(message("assistant", text_block(render_step(step))))
            messages.append(message("user", text_block(_turn_after(step, qa.question))))
        messages.append(message("assistant", text_block(qa.final_answer)))
    return messages


def orr_api_outputs(trajectory: Trajectory) -> list[tuple[str, str]]:
    """Every non-RAG operator result of the dialogue, in call order, each distinct result once."""
    seen: dict[tuple[str, str], None] = {}
    for qa in trajectory.qas:
        for step in qa.steps:
            for obs in step.observations:
                if obs.operator != "rag":
                    seen.setdefault((obs.operator, obs.text), None)
    return list(seen)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _quotable(texts: list[str]) -> str:
    """The RAG results as lower-case words, one space apart (" w1 w2 … "), one text per line."""
    return "\n".join(" " + " ".join(_words(text)) + " " for text in texts)


def _quotes(sentence: str, quotable: str) -> bool:
    """Does `sentence` share `QUOTE_MIN_WORDS` consecutive words with a RAG result?"""
    words = _words(sentence)
    return any(f" {' '.join(words[i: i + QUOTE_MIN_WORDS])} " in quotable
               for i in range(len(words) - QUOTE_MIN_WORDS + 1))


def rag_results(trajectory: Trajectory) -> list[str]:
    return [obs.text for qa in trajectory.qas for step in qa.steps for obs in step.observations
            if obs.operator == "rag"]


def _units(steps: list[Step]) -> list[str]:
    """The thoughts' sentences, in order; a thought built from the source's own rationale stays whole
    (its lead marks all of it)."""
    units: list[str] = []
    for step in steps:
        thought = step.thought.strip()
        if is_source_rationale(thought):
            units.append(thought)
        else:
            units += split_sentences(thought)
    return units


def _without_repeats(units: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for unit in units:
        key = normalise_answer(unit) or unit
        if key not in seen:
            seen.add(key)
            kept.append(unit)
    return kept


def _orr_views(units: list[str], api_outputs: Sequence[tuple[str, str]]) -> list[StepView]:
    return ([StepView("", "continue", tuple(api_outputs))] if api_outputs else []) + \
        [StepView(unit, "continue") for unit in units]


def _without_leaks(units: list[str], question: str, answer: str, api_outputs: Sequence[tuple[str, str]],
                   prior: Optional[Evidence], drop: bool = True) -> tuple[list[str], Optional[Evidence]]:
    """`units` without those that leak the answer as ORR shows them (the API outputs first, then the
    thought), by the one definition (`judge_question`): the RAG passage a sentence drew on is not in ORR,
    and a sentence the evidence ORR shows does not support is not reasoning there. With `drop` False
    (the RR question leaks already, and ORR shows the same reasoning: the audit counts it in both) the
    units stay. Returns the units kept and the evidence after them (for the dialogue's next question)."""
    units = list(units)
    offset = 1 if api_outputs else 0
    while True:
        verdict, evidence = judge_question(question, _orr_views(units, api_outputs), answer, prior=prior)
        leaks = [leak.step - offset for leak in verdict.leaks if leak.step >= offset]
        if not leaks or not drop:
            return units, evidence
        del units[leaks[0]]


def orr_thought(qa: QATrajectory, rag_texts: Optional[list[str]] = None, quotable: Optional[str] = None,
                api_outputs: Optional[Sequence[tuple[str, str]]] = None, prior: Optional[Evidence] = None) -> str:
    """The compression of the final trajectory (DESIGN §5, issue 29): the thoughts of the steps no
    reflection replaced (`generation.final_trajectory.final_steps`: no reflection step, no defective step,
    no old end the repair took over), sentence by sentence, without the sentences that quote a RAG result
    (`QUOTE_MIN_WORDS` words in a row: ORR carries no RAG, so its thought must not show a passage its user
    turn does not), without a sentence it already said, and, given the ORR turn's `api_outputs` (for the
    first question; `()` for a later one), without a sentence that leaks the answer as ORR shows it.
    Sanitised once more as a whole: the ends of two clean thoughts could meet into a token (`…<|` + `|>…`)."""
    return _orr_thought(qa, quotable if quotable is not None else _quotable(rag_texts or []), api_outputs, prior)[0]


def _orr_thought(qa: QATrajectory, quotable: str, api_outputs: Optional[Sequence[tuple[str, str]]],
                 prior: Optional[Evidence], drop_leaks: bool = True) -> tuple[str, Optional[Evidence]]:
    units = _units(final_steps(qa.steps))
    if quotable:
        units = [u for u in units if not _quotes(u, quotable)]
    units = _without_repeats(units)
    evidence = prior
    if api_outputs is not None:
        units, evidence = _without_leaks(units, qa.question, qa.final_answer, api_outputs, prior, drop_leaks)
    return as_data(" ".join(units)), evidence


def _rr_leaked(trajectory: Trajectory) -> list[bool]:
    """Per question: does RR leak (an unrepaired leak, as the audit reads the RR row)?"""
    return [verdict.leaked for verdict in judge_dialogue(
        [_OrrQuestion(qa.question, tuple(qa.steps), qa.final_answer) for qa in trajectory.qas])]


def orr_thoughts(trajectory: Trajectory) -> list[str]:
    """`orr_thought` of every question, against every RAG result of the dialogue, each judged as its ORR
    turn shows it (the API outputs in the first, the earlier questions' evidence after). A question whose
    RR reasoning leaks already keeps its sentences: ORR shows the same flaw and the audit counts it in both
    (dropping them would empty a model teacher's ORR wherever its visual reading is all the evidence)."""
    quotable = _quotable(rag_results(trajectory))
    api_outputs = orr_api_outputs(trajectory)
    thoughts, evidence = [], None
    for index, (qa, rr_leaked) in enumerate(zip(trajectory.qas, _rr_leaked(trajectory))):
        thought, evidence = _orr_thought(qa, quotable, api_outputs if index == 0 else (), evidence, not rr_leaked)
        thoughts.append(thought)
    return thoughts


def orr_leaks(trajectory: Trajectory, thoughts: list[str]) -> list[str]:
    """Leaks of the ORR turns as the audit reads them (each thought one step after the API outputs) in
    questions whose RR reasoning does not leak: the reasons, none when ORR is no worse than RR."""
    api_outputs = orr_api_outputs(trajectory)
    questions = [_OrrQuestion(qa.question, orr_views(thought, api_outputs if i == 0 else ()), qa.final_answer)
                 for i, (qa, thought) in enumerate(zip(trajectory.qas, thoughts))]
    return [leak.reason for verdict, rr_leaked in zip(judge_dialogue(questions), _rr_leaked(trajectory))
            if not rr_leaked for leak in verdict.leaks if not leak.repaired]


@dataclass(frozen=True)
class _OrrQuestion:
    question: str
    steps: tuple
    answer: str


def orr_messages(trajectory: Trajectory, n_images: int, thoughts: Optional[list[str]] = None) -> list[dict[str, Any]]:
    """The ORR turns; `thoughts`: `orr_thoughts(trajectory)` when the caller has them already."""
    messages = []
    api_outputs = orr_api_outputs(trajectory)
    thoughts = orr_thoughts(trajectory) if thoughts is None else thoughts
    for index, (qa, thought) in enumerate(zip(trajectory.qas, thoughts)):
        text = render_orr_question(qa.question, api_outputs if index == 0 else ())
        images = [image_block() for _ in range(n_images)] if index == 0 else []
        messages.append(message("user", *images, text_block(text)))
        messages.append(message("assistant", text_block(render_orr_reply(thought, qa.final_answer))))
    return messages


def _steps_column(trajectory: Trajectory) -> list[dict[str, Any]]:
    return [
        {
            "thought": step.thought,
            "operators": list(step.operators),
            "rag_query": step.rag_query,
            "signal": step.signal,
            "observations": [{"operator": o.operator, "text": o.text, "backend": o.backend} for o in step.observations],
        }
        for qa in trajectory.qas
        for step in qa.steps
    ]


# -- the three guarantees ---------------------------------------------------------------------------
def _check_length(sample_id: str, what: str, text: Optional[str], field: str, limits: TextLimits) -> None:
    cap = getattr(limits, field)
    if text is not None and len(text) > cap:
        raise Quarantined(sample_id, STAGE, f"{what} has {len(text):,} characters, over the cap of {cap:,} "
                                            f"(integration.max_chars.{field})", "TextTooLong")


def check_lengths(sample: Sample, trajectory: Trajectory, limits: TextLimits) -> None:
    """Quarantine (raise) when a text field is over its cap; the first one found is named."""
    for i, qa in enumerate(sample.qas, 1):
        _check_length(sample.id, f"the source question {i}", qa.question, "question", limits)
        _check_length(sample.id, f"the source answer {i}", qa.answer, "answer", limits)
    for i, qa in enumerate(trajectory.qas, 1):
        _check_length(sample.id, f"question {i}", qa.question, "question", limits)
        _check_length(sample.id, f"the final answer of question {i}", qa.final_answer, "answer", limits)
        _check_length(sample.id, f"the reflection of question {i}", qa.reflection.reason, "reflection", limits)
        for j, step in enumerate(qa.steps, 1):
            where = f"step {j} of question {i}"
            _check_length(sample.id, f"the thought of {where}", step.thought, "thought", limits)
            _check_length(sample.id, f"the RAG query of {where}", step.rag_query, "rag_query", limits)
            for obs in step.observations:
                _check_length(sample.id, f"the {obs.operator} result of {where}", obs.text, "observation", limits)


def sanitise(sample: Sample, trajectory: Trajectory) -> tuple[Sample, Trajectory]:
    """Copies of both with every text field passed through `as_data` (operator names are ours)."""
    def step(s: Step) -> Step:
        return s.model_copy(update={
            "thought": as_data(s.thought),
            "rag_query": as_data(s.rag_query) or None,
            "observations": [o.model_copy(update={"text": as_data(o.text)}) for o in s.observations],
        })

    qas = [qa.model_copy(update={
        "question": as_data(qa.question),
        "final_answer": as_data(qa.final_answer),
        "reflection": qa.reflection.model_copy(update={"reason": as_data(qa.reflection.reason)}),
        "steps": [step(s) for s in qa.steps],
    }) for qa in trajectory.qas]
    sample_qas = [qa.model_copy(update={"question": as_data(qa.question), "answer": as_data(qa.answer)})
                  for qa in sample.qas]
    return sample.model_copy(update={"qas": sample_qas}), trajectory.model_copy(update={"qas": qas})


def _expected_rr(trajectory: Trajectory) -> list[tuple]:
    return [(qa.question, [(s.thought, tuple(s.operators), s.rag_query, s.signal, tuple(_observations(s)))
                           for s in qa.steps], qa.final_answer) for qa in trajectory.qas]


def verify_parse_back(sample_id: str, trajectory: Trajectory, rows: dict[str, dict[str, Any]], n_images: int,
                      thoughts: list[str]) -> None:
    """Parse both rows back; anything but exactly the rendered dialogue (`thoughts`: the ORR thoughts it
    was rendered with) quarantines the sample."""
    try:
        rr = parse_rr(rows["rr"]["messages"])
        orr = parse_orr(rows["orr"]["messages"])
    except FormatError as exc:
        raise Quarantined(sample_id, STAGE, f"the rendered row does not parse back: {exc}", "FormatError") from None
    got_rr = [(q.question, [(s.thought, s.operators, s.rag_query, s.signal, s.observations) for s in q.steps],
               q.answer) for q in rr.questions]
    expected_orr = [(qa.question, thought, qa.final_answer) for qa, thought in zip(trajectory.qas, thoughts)]
    got_orr = [(q.question, q.thought, q.answer) for q in orr.questions]
    problems = []
    if got_rr != _expected_rr(trajectory):
        problems.append("RR steps differ from the trajectory")
    if got_orr != expected_orr or list(orr.questions[0].api_outputs) != orr_api_outputs(trajectory):
        problems.append("ORR turns differ from the trajectory")
    if rr.questions[0].n_images != n_images or orr.questions[0].n_images != n_images:
        problems.append("image blocks differ from the images")
    if problems:
        raise Quarantined(sample_id, STAGE, "the rendered row does not parse back: " + "; ".join(problems),
                          "FormatError")


def build_rows(sample: Sample, trajectory: Trajectory, image_bytes: list[bytes],
               limits: Optional[TextLimits] = None) -> dict[str, dict[str, Any]]:
    """The RR and ORR rows of one dialogue, in the row schema of `mmat_1m.FEATURES` (see the module
    docstring). Raises `Quarantined` (stage `integration`) for a text over its cap or a row that does
    not parse back."""
    check_lengths(sample, trajectory, limits or TextLimits())
    sample, trajectory = sanitise(sample, trajectory)
    verified = [qa.verified for qa in trajectory.qas if qa.verified is not None]
    grounded = [qa.grounded for qa in trajectory.qas if qa.grounded is not None]
    common = {
        "id": sample.id,
        "source": sample.source,
        "subset": sample.subset,
        "images": [{"bytes": data, "path": None} for data in image_bytes],
        "steps": _steps_column(trajectory),
        "question": sample.question,
        "answer": sample.answer,
        "reflection": trajectory.reflection.model_dump(),
        "teacher": trajectory.usage.model_dump(),
        "meta": {
            "operators_available": list(trajectory.operators_available),
            "verified": all(verified) if verified else None,
            "judge_score": trajectory.judge_score,
            "teacher_mode": trajectory.teacher_mode,
            "dropped_qas": int(sample.meta.get("dropped_qas", 0)),
            "grounded": all(grounded) if grounded else None,
            "math_questions": sum(1 for qa in sample.qas if is_math(sample, qa)),
            "evidence": row_kind([q.kind for q in trajectory_evidence(trajectory, sample)]),
        },
        "engine_version": ENGINE_VERSION,
    }
    n = len(image_bytes)
    thoughts = orr_thoughts(trajectory)
    rows = {
        "rr": {**common, "format": "rr", "messages": rr_messages(trajectory, n)},
        "orr": {**common, "format": "orr", "messages": orr_messages(trajectory, n, thoughts)},
    }
    verify_parse_back(sample.id, trajectory, rows, n, thoughts)
    leaks = orr_leaks(trajectory, thoughts)
    if leaks:  # by construction none; a guard, so no ORR row teaches a leak the RR row repaired
        raise Quarantined(sample.id, STAGE, f"the ORR row leaks the answer: {leaks[0]}", "OrrLeak")
    return rows
