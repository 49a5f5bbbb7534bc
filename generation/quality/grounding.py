"""What supports an answer: its target (what the answer claims), the numbers and arithmetic a dialogue
shows, and the evidence that has come back so far. The definitions are stated in
`generation.quality.definitions` (its docstring: target, evidence, supported); this module holds the
code, so the leak judgement there and the audit's counts read one `Evidence`.

Metric edges, closed (issue 29): a time is one value whatever its spacing ("2:10P.M." is "2:10 P.M."); the
digits of a time or of a longer number are not numbers of their own ("7:15" does not show 15); a fraction
is supported only by its value or by both its parts shown as evidence (not by being small).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from generation.answer_reading import choice_index, parse_numbers
from generation.answers import LETTERS, normalise_answer

LONG_ANSWER_WORDS = 6
LONG_ANSWER_RECALL = 0.6
# Numbers any reasoning may use without evidence: small counts, and the constants of everyday
# arithmetic and geometry (a right angle, a straight line, a full turn, percent, hours, days, months).
CONSTANTS = frozenset({float(n) for n in range(0, 13)} | {24.0, 60.0, 90.0, 100.0, 180.0, 360.0, 365.0, 1000.0})
_YES_NO = {"yes", "no"}
_STOPWORDS = frozenset(
    "a an the is are was were be been being of in on at to for from by with about as into onto over under "
    "this that these those it its it's there here what which who whom whose when where why how do does did "
    "done can could should would will shall may might must has have had not or and but if then than so such "
    "image picture photo shown show shows showing visible see seen any some all each one please answer "
    "question single word phrase yes no".split())


# --------------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class Target:
    """What an answer claims: `text` (the answer, or the chosen option's text), its `kind`
    (`yesno` | `number` | `long` | `text`, or `label`: a bare option letter whose option is drawn in the
    image, which no text supports), the option `letter` when it is a choice, and the number."""

    text: str
    kind: str
    norm: str
    letter: Optional[str] = None
    value: Optional[float] = None


def _option_text(choice: str) -> str:
    return re.sub(r"^\s*\(?[A-Za-z]\)\s*|^\s*[A-Za-z][.:]\s+", "", choice).strip()


def answer_target(answer: str, choices: Sequence[str] = ()) -> Target:
    letter = None
    text = str(answer or "").strip()
    if choices:
        index = choice_index(text, list(choices))
        if index is not None:
            letter, text = LETTERS[index], _option_text(choices[index]) or LETTERS[index]
    norm = normalise_answer(text)
    numbers = parse_numbers(text)
    if re.fullmatch(r"\(?[A-H]\)?\.?", text.strip()):
        return Target(text, "label", norm, letter)  # an option drawn in the image (RAVEN): no text can show it
    if norm in _YES_NO:
        return Target(text, "yesno", norm, letter)
    if len(numbers) == 1 and re.fullmatch(r"[$€£¥]?\s*-?[\d.,/]+\s*[a-z%°²³ .]*", norm):
        return Target(text, "number", norm, letter, numbers[0])
    if len(norm.split()) > LONG_ANSWER_WORDS:
        return Target(text, "long", norm, letter)
    return Target(text, "text", norm, letter)


def content_words(text: str) -> list[str]:
    return [w for w in normalise_answer(text).split() if w not in _STOPWORDS and len(w) > 1]


# ------------------------------------------------------------------------------------- arithmetic
_TOKEN = re.compile(r"(?P<num>[$€£¥]?\d[\d,]*(?:\.\d+)?(?:\s?[%°])?)|(?P<op>[-+×*/÷−=()])|(?P<x>(?<=\s)[xX](?=\s))"
                    r"|(?P<space>\s+)|(?P<other>[^\s\d$€£¥+×*/÷−=()xX-]+|.)", re.S)  # a run of other text at once
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub,
            ast.UAdd)
_OPS = {"×": "*", "x": "*", "X": "*", "÷": "/", "−": "-"}


_FRACTION = re.compile(r"-?(\d+)\s*/\s*(\d+)")
# A clock time (`7:15`, `2:10P.M.`, `12:30:05`): one value, never two numbers of its own.
_TIME = re.compile(r"(?<![\d:.,])(\d{1,2}):([0-5]\d)(?::([0-5]\d))?(?![\d:])")
_MERIDIEM = re.compile(r"(\d)\s*(am|pm)\b")  # in normal form: `2h10pm` and `2h10 pm` are one spelling
_ELAPSED = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)\s*(minutes?|mins?|hours?|hrs?)\b", re.I)


def grounding_norm(text: str) -> str:
    """The normal form (`generation.answers.normalise_answer`) the evidence is searched in: a clock time is
    one token (`7:15` -> `7h15`, so neither `7` nor `15` appears on its own) and a.m./p.m. is one word after
    it whatever the spacing (`2:10P.M.` and `2:10 P.M.` -> `2h10 pm`)."""
    text = _TIME.sub(lambda m: "h".join(g for g in m.groups() if g), str(text))
    return _MERIDIEM.sub(r"\1 \2", normalise_answer(text))


def without_times(text: str) -> str:
    """`text` with its clock times blanked out: what numbers are read from (a time is not two numbers)."""
    return _TIME.sub(" ", str(text))


def _minutes(match: re.Match, text: str) -> float:
    hours, minutes = int(match.group(1)), int(match.group(2))
    after = text[match.end(): match.end() + 6].lower().replace(".", "").lstrip()
    if after.startswith("pm") and hours < 12:
        hours += 12
    elif after.startswith("am") and hours == 12:
        hours = 0
    return hours * 60.0 + minutes


def elapsed_times(text: str, known_time) -> list[float]:
    """Durations `text` states rightly between two clock times it names that `known_time` accepts
    (`From 7:00 to 7:15 is 15 minutes` -> [15.0]): the one derivation a time takes part in."""
    times = [(m.group(), _minutes(m, text)) for m in _TIME.finditer(text)]
    times = [value for written, value in times if known_time(written)]
    if len(times) < 2:
        return []
    found = []
    for match in _ELAPSED.finditer(text):
        amount = float(match.group(1))
        minutes = amount * (60.0 if match.group(2).lower().startswith("h") else 1.0)
        if any(abs(abs(b - a) - minutes) < 1e-9 for i, a in enumerate(times) for b in times[i + 1:]):
            found.append(amount)
    return found


def _number(token: str) -> tuple[float, int]:
    """(value, decimal places) of a written number (`$1,280.50` -> (1280.5, 2))."""
    digits = re.sub(r"[^\d.]", "", token).rstrip(".")
    return float(digits), len(digits.split(".")[1]) if "." in digits else 0


def _evaluate(side: list[tuple[str, Any]]) -> Optional[float]:
    """The value of one side of an equation (numbers, + - × ÷ and parentheses), or None."""
    text = " ".join(repr(v[0]) if kind == "num" else v for kind, v in side)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None
    if not all(isinstance(node, _ALLOWED) for node in ast.walk(tree)):
        return None
    try:
        return float(eval(compile(tree, "<arithmetic>", "eval"), {"__builtins__": {}}, {}))  # noqa: S307 - AST checked
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def same_number(value: float, written: float, places: int) -> bool:
    """`value` equals a number written with `places` decimals (`8.333` is `8.33`; `18.6` is `18.60`)."""
    return abs(value - written) <= max(1e-9 * max(1.0, abs(written)), 0.5 * 10 ** -places if places else 1e-9)


_NUM = r"[$€£¥]?\d[\d,]*(?:\.\d+)?"
_COMPARISON = re.compile(
    rf"(?P<a>{_NUM})\s*(?:(?:is|are|was|were)\s+)?(?:(?P<word>less|fewer|smaller|lower|cheaper|more|greater|larger|"
    rf"higher|bigger)\s+than|(?P<sign><=|>=|≤|≥|<|>))\s*(?P<b>{_NUM})", re.I)
_PARITY = re.compile(rf"(?P<n>{_NUM})(?:\s+ends\s+in\s+\d+)?\s*,?\s*(?:so\s+)?(?:it\s+|which\s+)?(?:is|are)\s+"
                     r"(?:an?\s+)?(?P<parity>odd|even)\b", re.I)
_BELOW = ("less", "fewer", "smaller", "lower", "cheaper", "<", "<=", "≤")


def decided_facts(text: str) -> list[tuple[list[float], str]]:
    """Facts `text` states rightly about numbers: for each comparison (`a is less than b`, `a > b`) or parity
    (`n is odd`, `n ends in 7, so it is odd`) that is true, (its numbers, what it decides: "comparison", or
    the parity word). Whether the numbers are known is the caller's question."""
    found: list[tuple[list[float], str]] = []
    for match in _COMPARISON.finditer(text):
        a, b = _number(match.group("a"))[0], _number(match.group("b"))[0]
        relation = (match.group("word") or match.group("sign")).lower()
        strict = relation not in ("<=", ">=", "≤", "≥")
        below = relation in _BELOW
        holds = (a < b if strict else a <= b) if below else (a > b if strict else a >= b)
        if holds:
            found.append(([a, b], "comparison"))
    for match in _PARITY.finditer(text):
        n = _number(match.group("n"))[0]
        parity = match.group("parity").lower()
        if n == int(n) and (int(n) % 2 == 1) == (parity == "odd"):
            found.append(([n], parity))
    return found


def equations(text: str) -> list[tuple[list[float], list[float]]]:
    """Arithmetic written out in `text` and right: for each chain `a + b = c` (or `a = b + c = d`) whose
    sides all have the same value (a side that is one written number at its written precision),
    (the operands of its first side, the value of every side)."""
    runs: list[list[tuple[str, Any]]] = [[]]
    for match in _TOKEN.finditer(_TIME.sub(" (time) ", text)):
        kind = match.lastgroup
        if kind == "num":
            if runs[-1] and runs[-1][-1][0] == "num":  # two numbers in a row: a new chain starts
                runs.append([])
            runs[-1].append(("num", _number(match.group())))
        elif kind in ("op", "x"):
            runs[-1].append(("op", _OPS.get(match.group(), match.group())))
        elif kind == "other" and runs[-1]:
            runs.append([])
    found = []
    for run in runs:
        sides: list[list[tuple[str, Any]]] = [[]]
        for token in run:
            if token == ("op", "="):
                sides.append([])
            else:
                sides[-1].append(token)
        # a side without a number (the ")" that closes "P(A and B)") is text around the chain, not a side
        sides = [side for side in sides if any(kind == "num" for kind, _ in side)]
        if len(sides) < 2 or not any(t[0] == "op" for side in sides for t in side):
            continue
        values = [_evaluate(side) for side in sides]
        if any(v is None for v in values):
            continue
        exact = [v for side, v in zip(sides, values) if len(side) > 1]
        ok = True
        for side, value in zip(sides, values):
            if len(side) == 1:
                ok &= all(same_number(e, value, side[0][1][1]) for e in exact)
            else:
                ok &= all(abs(value - e) <= 1e-9 * max(1.0, abs(e)) for e in exact)
        if ok:
            first = next(side for side in sides if len(side) > 1)
            found.append(([v[0] for kind, v in first if kind == "num"], [float(v) for v in values]))
    return found


# --------------------------------------------------------------------------------------- evidence
class Evidence:
    """What a dialogue has shown so far: result texts, known numbers, numbers derived by arithmetic."""

    def __init__(self, question: str = "") -> None:
        self.question = question
        self.texts: list[str] = []
        self._norm = " "
        self.numbers: list[float] = []
        self.derived: list[float] = []
        self.decided: list[str] = []  # what true statements about known numbers decided ("comparison", "odd")
        self._question_numbers = parse_numbers(without_times(question)) if question else []

    def copy(self, question: Optional[str] = None) -> "Evidence":
        other = Evidence(self.question if question is None else question)
        other.texts, other._norm = list(self.texts), self._norm
        other.numbers, other.derived, other.decided = list(self.numbers), list(self.derived), list(self.decided)
        return other

    @property
    def empty(self) -> bool:
        return not self.texts

    def add_result(self, text: str) -> None:
        """An operator result or a retrieved passage."""
        self.texts.append(text)
        self._norm += grounding_norm(text) + " "
        self.numbers += parse_numbers(without_times(text))

    def add_results(self, observations: Iterable[tuple[str, str]]) -> None:
        for _, text in observations:
            self.add_result(text)

    def known(self, value: float, constants: bool = True) -> bool:
        """Is `value` a number shown (results, derivations, the question), or, with `constants`, one of
        `CONSTANTS`?"""
        pool = self.numbers + self.derived + self._question_numbers
        return (constants and value in CONSTANTS) or any(abs(value - v) <= 1e-9 * max(1.0, abs(v)) for v in pool)

    def derivations(self, thought: str) -> list[float]:
        """The values `thought` derives from known numbers (and earlier results of the same thought)."""
        new: list[float] = []
        for operands, values in equations(thought):
            if all(self.known(v) or any(abs(v - d) <= 1e-9 * max(1.0, abs(d)) for d in new) for v in operands):
                new += values
        return new

    def add_thought(self, thought: str) -> None:
        """A step's reasoning: the numbers it derives, then the facts it decides from known numbers."""
        self.derived += self.derivations(thought) + elapsed_times(thought, self._known_time)
        self.decided += [fact for values, fact in decided_facts(thought) if all(self.known(v) for v in values)]

    def contains(self, norm_text: str) -> bool:
        """Does the evidence hold this text (in `grounding_norm`, which a normal form passes unchanged but
        for its a.m./p.m. spacing)?"""
        norm_text = _MERIDIEM.sub(r"\1 \2", norm_text)
        return bool(norm_text) and f" {norm_text} " in self._norm

    def _known_time(self, written: str) -> bool:
        return f" {grounding_norm(written).split()[0]} " in self._norm

    def supports(self, target: Target) -> bool:
        """Is `target` in the evidence (see the module docstring)?"""
        if target.kind == "number" and target.value is not None:
            places = _places(target.text)
            if any(same_number(v, target.value, places) for v in self.numbers + self.derived):
                return True
            fraction = _FRACTION.fullmatch(target.norm)
            if fraction and all(self.known(float(part), constants=False) for part in fraction.groups()):
                return True
        if target.kind == "yesno":
            if "comparison" in self.decided:
                return True
            words = content_words(self.question)
            hits = sum(1 for w in words if self.contains(w))
            return bool(words) and hits * 2 >= len(words)
        if target.kind == "label":
            return False
        if target.kind == "long":
            words = content_words(target.text)
            return bool(words) and sum(1 for w in words if self.contains(w)) >= LONG_ANSWER_RECALL * len(words)
        return self.contains(grounding_norm(target.text)) or target.norm in self.decided


def _places(text: str) -> int:
    match = re.search(r"\d\.(\d+)", text)
    return len(match.group(1)) if match else 0
