"""The RR and ORR dialogue formats (DESIGN §5), defined once: the turns the renderer writes and the
strict parser that reads them back.

Guarantee: for every row `generation.integration.build_rows` writes, `parse_messages(row["messages"],
row["format"])` returns exactly the questions, steps, observations and answers the row was rendered
from (the integration stage checks this for every row and quarantines one that does not). The parser
accepts nothing else: a missing tag, a turn out of order, an unknown signal, an image block in the
wrong place or dialogue markup inside a field raises `FormatError` with the reason and the index of
the message.

What the parser returns (plain frozen dataclasses):

    dialogue = parse_rr(row["messages"])          # RRDialogue(system, questions=[RRQuestion, ...])
    for q in dialogue.questions:
        q.question, q.answer, q.n_images           # the question as asked, the short answer
        for step in q.steps:                       # RRStep(thought, operators, rag_query, signal,
            step.observations                      #        observations=(("ocr", "STOP"), ...))
    dialogue = parse_orr(row["messages"])         # ORRDialogue(questions=[ORRQuestion(question,
                                                   #   api_outputs, thought, answer, n_images)])
    parse_messages(messages, "rr" | "orr")        # either, by name
    parse_step("<THOUGHT>…</THOUGHT><SIGNAL>end</SIGNAL>")   # one assistant step (an agent's reply)
    parse_orr_reply("<THOUGHT>…</THOUGHT><ANSWER>The answer is: X</ANSWER>")  # -> (thought, "X")
    parse_answer("42")                                                       # an RR short answer

`messages` are the row schema's content-block messages (`{"role", "content": [{"type", "text"}]}`);
a message whose content is a plain string is read as one text block (exported and chat-API forms).

`strict=False` (every parse function takes it) reads a row as it was written, for showing it as it
is (`mmat view`): a field may hold markup (a hand-edited row, or one from an engine before the
sanitiser), and the fixed request turns may be worded as earlier engines wrote them (a question turn
without " Please start your reasoning.", another reflection request). The order of the turns, the
steps' tags, the results turns and the ORR frame must still be the layout's. Either way an RR
question keeps its question turn (`asked`) and the user turn that followed each of its steps
(`turns_after`) as written.

RR, per question: `user` question + " Please start your reasoning." (the first question also holds
the image blocks) → for every step, `assistant` step and `user` turn: results (`continue` with
results), `NO_RESULTS_TURN` (`continue` without), `REFLECTION_TURN` (`reflection`) or the summary
turn (`end`) → `assistant` short answer. ORR, per question: `user` question (the first also holds the
images and, when any operator ran, `ORR_API_INTRO` and one API block per result) → `assistant`
`<THOUGHT>…</THOUGHT><ANSWER>The answer is: …</ANSWER>`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from generation.sanitize import find_markup

SIGNALS = ("continue", "reflection", "end")
START_SUFFIX = " Please start your reasoning."
NO_RESULTS_TURN = (
    "No additional operator or rag results were selected in the previous step. Please continue your reasoning."
)
REFLECTION_TURN = (
    "No additional operator or rag results were selected in the previous step. Please make a reflection."
)
SUMMARY_TURN = "Based on the above information, please summarize and give the answer to the initial question: {question}"
RESULTS_HEAD = "Here are {names} results from the previous step:"
RESULT_BLOCK = "-{name} information: {text}"
RESULTS_TAIL = " Please continue your reasoning."
ORR_API_INTRO = "Use the following API outputs to help answer the question:"
ORR_API_BLOCK = "<|begin_api_invoke|>{name}<|end_api_invoke|><|begin_result_of_api|>{result}<|end_result_of_api|>"
ORR_ANSWER = "<THOUGHT>{thought}</THOUGHT><ANSWER>The answer is: {answer}</ANSWER>"
# What an agent runtime (`agent/`) says once when a tuned model's reply does not parse; not part of any row.
STEP_FORMAT_REMINDER = (
    "Your previous reply was not in the required format. Reply with one step: <THOUGHT>your reasoning</THOUGHT>, "
    "then optionally <OPERATOR>operator names, comma separated</OPERATOR> and <RAG>search query</RAG>, then "
    "<SIGNAL>continue, reflection or end</SIGNAL>."
)
ANSWER_FORMAT_REMINDER = "Your previous reply was not in the required format. Reply with the short answer only, without tags."
ORR_FORMAT_REMINDER = (
    "Your previous reply was not in the required format. Reply with <THOUGHT>your reasoning</THOUGHT>"
    "<ANSWER>The answer is: your answer</ANSWER>."
)


class FormatError(ValueError):
    """A dialogue that is not in the RR/ORR format. `reason` says what is wrong; `index` is the
    position of the offending message (None when the problem is not one message)."""

    def __init__(self, reason: str, index: Optional[int] = None) -> None:
        super().__init__(reason if index is None else f"message {index}: {reason}")
        self.reason = reason
        self.index = index


# -- what the parser returns --------------------------------------------------------------------
@dataclass(frozen=True)
class RRStep:
    thought: str
    operators: tuple[str, ...] = ()
    rag_query: Optional[str] = None
    signal: str = "continue"
    observations: tuple[tuple[str, str], ...] = ()  # (operator, text) per result, in order


@dataclass(frozen=True)
class RRQuestion:
    question: str
    steps: tuple[RRStep, ...]
    answer: str
    n_images: int = 0
    turns_after: tuple[str, ...] = ()  # the user turn after each step, as written
    asked: str = ""  # the question turn's text as written (the question and " Please start your reasoning.")


@dataclass(frozen=True)
class RRDialogue:
    system: Optional[str]
    questions: tuple[RRQuestion, ...]


@dataclass(frozen=True)
class ORRQuestion:
    question: str
    thought: str
    answer: str
    api_outputs: tuple[tuple[str, str], ...] = ()  # (operator, result), first question only
    n_images: int = 0


@dataclass(frozen=True)
class ORRDialogue:
    questions: tuple[ORRQuestion, ...] = field(default_factory=tuple)


# -- rendering: the pieces the integration stage assembles ----------------------------------------
def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_block() -> dict[str, Any]:
    return {"type": "image", "text": None}


def message(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": list(blocks)}


def render_step(thought: str, operators: Sequence[str] = (), rag_query: Optional[str] = None,
                signal: str = "continue") -> str:
    """`<THOUGHT>…</THOUGHT><OPERATOR>a, b</OPERATOR><RAG>q</RAG><SIGNAL>s</SIGNAL>`; unused tags omitted."""
    out = f"<THOUGHT>{thought}</THOUGHT>"
    if operators:
        out += f"<OPERATOR>{', '.join(operators)}</OPERATOR>"
    if rag_query:
        out += f"<RAG>{rag_query}</RAG>"
    return out + f"<SIGNAL>{signal}</SIGNAL>"


def render_results_turn(observations: Sequence[tuple[str, str]]) -> str:
    """The user turn that answers a `continue` step with its (operator, text) results, or their absence."""
    if not observations:
        return NO_RESULTS_TURN
    names = ", ".join(dict.fromkeys(name for name, _ in observations))
    blocks = " ".join(RESULT_BLOCK.format(name=name, text=text) for name, text in observations)
    return RESULTS_HEAD.format(names=names) + blocks + RESULTS_TAIL


def render_first_turn(question: str) -> str:
    return question + START_SUFFIX


def render_summary_turn(question: str) -> str:
    return SUMMARY_TURN.format(question=question)


def render_orr_question(question: str, api_outputs: Sequence[tuple[str, str]] = ()) -> str:
    if not api_outputs:
        return question
    blocks = "\n".join(ORR_API_BLOCK.format(name=name, result=result) for name, result in api_outputs)
    return f"{question}\n{ORR_API_INTRO}\n{blocks}"


def render_orr_reply(thought: str, answer: str) -> str:
    return ORR_ANSWER.format(thought=thought, answer=answer)


# -- parsing ------------------------------------------------------------------------------------
_NAME = r"[A-Za-z0-9_]+"
_STEP = re.compile(
    r"<THOUGHT>(?P<thought>.*?)</THOUGHT>"
    r"(?:<OPERATOR>(?P<operators>.*?)</OPERATOR>)?"
    r"(?:<RAG>(?P<rag>.*?)</RAG>)?"
    r"<SIGNAL>(?P<signal>.*?)</SIGNAL>",
    re.DOTALL,
)
_ORR_REPLY = re.compile(r"<THOUGHT>(?P<thought>.*?)</THOUGHT><ANSWER>The answer is: (?P<answer>.*)</ANSWER>", re.DOTALL)
_RESULTS_HEAD = re.compile(r"Here are (?P<names>" + _NAME + r"(?:, " + _NAME + r")*) results from the previous step:")
_API_BLOCK = re.compile(r"<\|begin_api_invoke\|>(?P<name>" + _NAME + r")<\|end_api_invoke\|>"
                        r"<\|begin_result_of_api\|>(?P<result>.*?)<\|end_result_of_api\|>", re.DOTALL)


def _data(text: str, what: str, index: Optional[int] = None, strict: bool = True) -> str:
    """A field's text, refused when it carries dialogue markup (only the renderer may put it there)."""
    found = find_markup(text) if strict else None
    if found:
        raise FormatError(f"{what} contains markup {found[0]!r}", index)
    return text


def message_text(message: dict[str, Any]) -> str:
    """A row message's text, leniently (its text blocks joined; a plain-string content as it is): for
    showing a message that does not parse. `parse_*` read messages strictly."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(block.get("text") or "" for block in content or () if block.get("type") == "text")


def render_turn_after(signal: str, observations: Sequence[tuple[str, str]], question: str) -> str:
    """The RR user turn that follows an assistant step: after `continue` its results (or that there are
    none), after `reflection` the reflection request, after `end` the summary request."""
    if signal == "continue":
        return render_results_turn(observations)
    if signal == "reflection":
        return REFLECTION_TURN
    return render_summary_turn(question)


def parse_step(text: str, index: Optional[int] = None, strict: bool = True) -> RRStep:
    """One RR assistant step (no observations: those are in the next user turn)."""
    match = _STEP.fullmatch(text)
    if match is None:
        raise FormatError("not a step: expected <THOUGHT>…</THOUGHT>[<OPERATOR>…</OPERATOR>][<RAG>…</RAG>]"
                          "<SIGNAL>continue|reflection|end</SIGNAL>", index)
    signal = match.group("signal")
    if signal not in SIGNALS:
        raise FormatError(f"unknown signal {signal!r}", index)
    operators: tuple[str, ...] = ()
    if match.group("operators") is not None:
        operators = tuple(match.group("operators").split(", "))
        if not all(re.fullmatch(_NAME, name) for name in operators):
            raise FormatError(f"bad operator list {match.group('operators')!r}", index)
    rag = match.group("rag")
    if rag is not None and not rag:
        raise FormatError("empty <RAG></RAG>", index)
    return RRStep(thought=_data(match.group("thought"), "thought", index, strict), operators=operators,
                  rag_query=None if rag is None else _data(rag, "rag query", index, strict), signal=signal)


def parse_answer(text: str, index: Optional[int] = None) -> str:
    """An RR short answer (the assistant turn after the summary turn): non-empty text without markup."""
    if not text.strip():
        raise FormatError("empty answer", index)
    return _data(text, "answer", index)


def parse_results_turn(text: str, index: Optional[int] = None, strict: bool = True) -> tuple[tuple[str, str], ...]:
    """The (operator, text) results of the user turn after a `continue` step; () for `NO_RESULTS_TURN`."""
    if text == NO_RESULTS_TURN:
        return ()
    head = _RESULTS_HEAD.match(text)
    if head is None or not text.endswith(RESULTS_TAIL):
        raise FormatError("expected the results turn after a continue step", index)
    distinct = head.group("names").split(", ")
    body = text[head.end(): len(text) - len(RESULTS_TAIL)]
    # Blocks are "-NAME information: TEXT" joined by " "; the data never carries the marker (sanitised).
    marker = re.compile("-(" + "|".join(map(re.escape, distinct)) + ") information: ")
    starts = [m for m in marker.finditer(body) if m.start() == 0 or body[m.start() - 1] == " "]
    if not starts or starts[0].start() != 0:
        raise FormatError("results turn has no result blocks", index)
    results = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() - 1 if i + 1 < len(starts) else len(body)
        results.append((match.group(1), _data(body[match.end(): end], f"{match.group(1)} result", index, strict)))
    if list(dict.fromkeys(name for name, _ in results)) != distinct:
        raise FormatError("results turn names do not match its result blocks", index)
    return tuple(results)


def _blocks(msg: Any, index: int) -> tuple[str, int, str]:
    """(role, image blocks, text) of one message; images must precede the one text block."""
    if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
        raise FormatError("not a {role, content} message", index)
    content = msg["content"]
    if isinstance(content, str):
        return msg["role"], 0, content
    images, texts = 0, []
    for block in content or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "image":
            if texts:
                raise FormatError("image block after the text", index)
            images += 1
        elif kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        else:
            raise FormatError(f"unexpected content block {block!r:.80}", index)
    if len(texts) != 1:
        raise FormatError(f"expected one text block, found {len(texts)}", index)
    return msg["role"], images, texts[0]


class _Reader:
    """Messages one at a time, each checked for its role; images allowed only where the caller says."""

    def __init__(self, messages: Sequence[Any]) -> None:
        self.messages = list(messages)
        self.index = 0

    def done(self) -> bool:
        return self.index >= len(self.messages)

    def peek_role(self) -> Optional[str]:
        return None if self.done() else _blocks(self.messages[self.index], self.index)[0]

    def take(self, role: str, images_allowed: bool = False) -> tuple[int, str, int]:
        if self.done():
            raise FormatError(f"dialogue ends where a {role} turn is expected", self.index)
        got, images, text = _blocks(self.messages[self.index], self.index)
        if got != role:
            raise FormatError(f"expected a {role} turn, found {got}", self.index)
        if images and not images_allowed:
            raise FormatError("image blocks outside the first user turn", self.index)
        self.index += 1
        return images, text, self.index - 1


def parse_rr(messages: Sequence[Any], strict: bool = True) -> RRDialogue:
    """An RR dialogue (see the module docstring). Raises FormatError."""
    reader = _Reader(messages)
    system = None
    if reader.peek_role() == "system":
        system = reader.take("system")[1]
    questions = []
    while not reader.done() or not questions:
        images, first, at = reader.take("user", images_allowed=not questions)
        asked = first
        if first.endswith(START_SUFFIX):
            first = first[: -len(START_SUFFIX)]
        elif strict:
            raise FormatError(f"a question turn must end with {START_SUFFIX.strip()!r}", at)
        question = _data(first, "question", at, strict)
        steps: list[RRStep] = []
        turns: list[str] = []
        while True:
            _, text, at = reader.take("assistant")
            step = parse_step(text, at, strict)
            _, turn, at = reader.take("user")
            if step.signal == "continue":
                step = RRStep(step.thought, step.operators, step.rag_query, step.signal,
                              parse_results_turn(turn, at, strict))
            elif step.signal == "reflection" and turn != REFLECTION_TURN and strict:
                raise FormatError("expected the reflection turn after a reflection step", at)
            steps.append(step)
            turns.append(turn)
            if step.signal == "end":
                if turn != render_summary_turn(question):
                    raise FormatError("expected the summary turn (with the question) after the end step", at)
                break
        _, answer, at = reader.take("assistant")
        questions.append(RRQuestion(question, tuple(steps), _data(answer, "answer", at, strict), images,
                                    tuple(turns), asked))
    return RRDialogue(system, tuple(questions))


def parse_orr_reply(text: str, index: Optional[int] = None, strict: bool = True) -> tuple[str, str]:
    """(thought, answer) of an ORR assistant turn."""
    match = _ORR_REPLY.fullmatch(text)
    if match is None:
        raise FormatError("not an ORR reply: expected <THOUGHT>…</THOUGHT><ANSWER>The answer is: …</ANSWER>", index)
    return _data(match.group("thought"), "thought", index, strict), _data(match.group("answer"), "answer", index, strict)


def _orr_question(text: str, first: bool, index: int, strict: bool) -> tuple[str, tuple[tuple[str, str], ...]]:
    opener = f"\n{ORR_API_INTRO}\n<|begin_api_invoke|>"
    at = text.find(opener)
    if at < 0:
        return _data(text, "question", index, strict), ()
    if not first:
        raise FormatError("API outputs outside the first question", index)
    blocks = text[at + len(opener) - len("<|begin_api_invoke|>"):]
    outputs, pos = [], 0
    while True:
        match = _API_BLOCK.match(blocks, pos)
        if match is None:
            raise FormatError("malformed API output block", index)
        outputs.append((match.group("name"), _data(match.group("result"), "API result", index, strict)))
        pos = match.end()
        if pos == len(blocks):
            break
        if blocks[pos] != "\n":
            raise FormatError("API output blocks must be separated by one newline", index)
        pos += 1
    return _data(text[:at], "question", index, strict), tuple(outputs)


def parse_orr(messages: Sequence[Any], strict: bool = True) -> ORRDialogue:
    """An ORR dialogue (see the module docstring). Raises FormatError."""
    reader = _Reader(messages)
    questions = []
    while not reader.done() or not questions:
        images, text, at = reader.take("user", images_allowed=not questions)
        question, outputs = _orr_question(text, not questions, at, strict)
        _, reply, at = reader.take("assistant")
        thought, answer = parse_orr_reply(reply, at, strict)
        questions.append(ORRQuestion(question, thought, answer, outputs, images))
    return ORRDialogue(tuple(questions))


def parse_messages(messages: Sequence[Any], fmt: str, strict: bool = True) -> RRDialogue | ORRDialogue:
    """`parse_rr` or `parse_orr` by the row's `format` ("rr" | "orr")."""
    if fmt == "rr":
        return parse_rr(messages, strict)
    if fmt == "orr":
        return parse_orr(messages, strict)
    raise FormatError(f"unknown format {fmt!r}; expected rr or orr")


def parse_row(row: dict[str, Any], strict: bool = True) -> RRDialogue | ORRDialogue:
    """A dataset row (its `messages` read by its `format`)."""
    return parse_messages(row["messages"], row["format"], strict)


__all__ = [
    "FormatError", "RRStep", "RRQuestion", "RRDialogue", "ORRQuestion", "ORRDialogue", "SIGNALS",
    "START_SUFFIX", "NO_RESULTS_TURN", "REFLECTION_TURN", "SUMMARY_TURN", "ORR_API_INTRO", "ORR_API_BLOCK",
    "STEP_FORMAT_REMINDER", "ANSWER_FORMAT_REMINDER", "ORR_FORMAT_REMINDER", "text_block", "image_block",
    "message", "render_step", "render_results_turn", "render_first_turn", "render_summary_turn",
    "render_turn_after", "render_orr_question", "render_orr_reply", "message_text", "parse_step",
    "parse_answer", "parse_results_turn", "parse_orr_reply", "parse_rr", "parse_orr", "parse_messages",
    "parse_row",
]
