"""What a good dialogue is, defined once: verified, grounded, leaked, duplicate.

Every place that judges data quality calls these functions: the audit (`mmat audit`, the card's
Quality section, the numbers in `run.log`), the rationale loop (`meta.grounded`, and
`teacher.require_grounding`), the general reflection check (its leak detector), and the offline
teacher (which writes a step only from evidence these functions accept). So a row the engine calls
grounded is grounded for the audit too, and a step the reflection flags is a step the audit counts.

The definitions work on what a dialogue shows, in order: the question, then steps (a thought, then
the operator and retrieval results that came back), then the final answer.

- **target**: what the answer claims. The answer itself; for a choice question answered by a letter,
  the chosen option's text (`choice_index`, the verifier's own reading of letters and options).
- **evidence**: the operator results and retrieved passages shown so far (earlier questions of the
  dialogue included), the numbers of the question, a few constants (`CONSTANTS`), and every number a
  step *derives* by arithmetic written out with known operands (`45 + 52 = 97`, `$6.20 × 3 = $18.60`:
  the operands must be evidence numbers or earlier results, and the arithmetic must be right), and
  every fact a step *decides* from known numbers and states rightly: a comparison (`$8.95 is less than
  $12.00`, `45 > 41`) and a parity (`27 ends in 7, so it is odd`).
- **supported**: the target is in the evidence. Text: its normal form (`generation.answers`) occurs,
  word for word, in the evidence's normal form. Numbers: the value is an evidence number or a derived
  one; a fraction `a/b` (TabMWP's simplified probabilities, `4/11`) also when its numerator and its
  denominator are both known numbers (evidence, derived, or the question's). Yes/no: the evidence speaks about what the question asks (at least half of its content words
  occur in it; a proxy: no text can show that a "no" is right), or a step decided a comparison of known
  numbers (what settles "does she have enough?"). A text answer a decided fact names (`odd`) is supported
  like one the results show. Long answers (more than
  `LONG_ANSWER_WORDS` words): at least `LONG_ANSWER_RECALL` of their content words occur in it.
- **grounded** (per question): the target is supported by the evidence shown before the final turn.
- **leaked** (per step): the step states the target before the evidence supports it (a quote of the
  question, which lists the options, is not a statement), or it mentions a reference, standard, given,
  expected or correct answer (`LEAK_DEFINITION`, which the model-based reflection prompt shows
  verbatim). A leak followed by a reflection step of the same question is *repaired*: the dialogue
  shows the defect and its repair, the pattern reflection data teaches. The audit's `leaked` counts
  unrepaired leaks.
- **verified**: the final answer matches the reference (`generation.verify.answers_match`).
- **duplicates**: exact (the same dialogue text and the same images) and near (the dialogue texts'
  word 5-gram sets overlap by at least `NEAR_DUPLICATE_JACCARD`, estimated by MinHash).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from generation.answers import normalise_answer
from generation.verify import LETTERS, choice_index, parse_numbers

LONG_ANSWER_WORDS = 6
LONG_ANSWER_RECALL = 0.6
NEAR_DUPLICATE_JACCARD = 0.9
# Numbers any reasoning may use without evidence: small counts, and the constants of everyday
# arithmetic and geometry (a right angle, a straight line, a full turn, percent, hours, days, months).
CONSTANTS = frozenset({float(n) for n in range(0, 13)} | {24.0, 60.0, 90.0, 100.0, 180.0, 360.0, 365.0, 1000.0})

# The words the model-based general reflection is shown (`prompts/reflection_general.j2` includes the file).
LEAK_DEFINITION = (Path(__file__).resolve().parents[1] / "prompts" / "leak_definition.txt").read_text().strip()

_REFERENCE = re.compile(
    r"\b(?:reference|standard|given|expected|provided|ground[- ]truth|gold|annotated|official|correct)\s+"
    r"(?:answer|solution|label)s?\b", re.I)
_YES_NO = {"yes", "no"}
_STOPWORDS = frozenset(
    "a an the is are was were be been being of in on at to for from by with about as into onto over under "
    "this that these those it its it's there here what which who whom whose when where why how do does did "
    "done can could should would will shall may might must has have had not or and but if then than so such "
    "image picture photo shown show shows showing visible see seen any some all each one please answer "
    "question single word phrase yes no".split())


# ------------------------------------------------------------------------------------- dialogues
@dataclass(frozen=True)
class StepView:
    """One step as the definitions read it: the thought, its signal, then the results that came back."""

    thought: str
    signal: str = "continue"
    observations: tuple[tuple[str, str], ...] = ()  # (operator, text)


def step_view(step: Any) -> StepView:
    """A `StepView` of an engine `Step` (observations are objects) or a parsed `RRStep` (pairs)."""
    pairs = tuple((o.operator, o.text) if hasattr(o, "operator") else (str(o[0]), str(o[1]))
                  for o in getattr(step, "observations", ()) or ())
    return StepView(step.thought or "", step.signal, pairs)


def question_choices(question: str) -> list[str]:
    """The options written into a question's text (rows carry no choices column)."""
    from generation.sources.base import parse_listed_choices

    return parse_listed_choices(question)


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
    for match in _TOKEN.finditer(text):
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
        sides = [side for side in sides if side]
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
        self._question_numbers = parse_numbers(question) if question else []

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
        self._norm += normalise_answer(text) + " "
        self.numbers += parse_numbers(text)

    def add_results(self, observations: Iterable[tuple[str, str]]) -> None:
        for _, text in observations:
            self.add_result(text)

    def known(self, value: float) -> bool:
        pool = self.numbers + self.derived + self._question_numbers
        return value in CONSTANTS or any(abs(value - v) <= 1e-9 * max(1.0, abs(v)) for v in pool)

    def derivations(self, thought: str) -> list[float]:
        """The values `thought` derives from known numbers (and earlier results of the same thought)."""
        new: list[float] = []
        for operands, values in equations(thought):
            if all(self.known(v) or any(abs(v - d) <= 1e-9 * max(1.0, abs(d)) for d in new) for v in operands):
                new += values
        return new

    def add_thought(self, thought: str) -> None:
        """A step's reasoning: the numbers it derives, then the facts it decides from known numbers."""
        self.derived += self.derivations(thought)
        self.decided += [fact for values, fact in decided_facts(thought) if all(self.known(v) for v in values)]

    def contains(self, norm_text: str) -> bool:
        return bool(norm_text) and f" {norm_text} " in self._norm

    def supports(self, target: Target) -> bool:
        """Is `target` in the evidence (see the module docstring)?"""
        if target.kind == "number" and target.value is not None:
            places = _places(target.text)
            if any(same_number(v, target.value, places) for v in self.numbers + self.derived):
                return True
            fraction = _FRACTION.fullmatch(target.norm)
            if fraction and all(self.known(float(part)) for part in fraction.groups()):
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
        return self.contains(target.norm) or target.norm in self.decided


# ---------------------------------------------------------------------------------------- leaks
def _places(text: str) -> int:
    match = re.search(r"\d\.(\d+)", text)
    return len(match.group(1)) if match else 0


def _letter_claim(letter: str) -> re.Pattern:
    return re.compile(r"(?i:\b(?:option|choice|answer is|answer:|answer would be|answer must be))\s*\(?" + letter
                      + r"\b")


_CONCLUSION = re.compile(r"\banswer(?: is| would be| must be)?\s*:?\s*[\"']?(yes|no)\b"
                         r"|\b(?:so|therefore|thus|hence)\s*,?\s*(yes|no)\b|^(yes|no)\s*[,.!;:]", re.I)


def _mentioned_outside_question(thought: str, target_norm: str, question: str) -> bool:
    """Does `thought` say `target_norm` other than by quoting the question (which lists the options)?"""
    words, wanted = normalise_answer(thought).split(), target_norm.split()
    if not wanted:
        return False
    asked = f" {normalise_answer(question)} "
    n = len(wanted)
    for p in range(len(words) - n + 1):
        if words[p: p + n] == wanted:
            before, after = " ".join(words[max(0, p - 2): p + n]), " ".join(words[p: p + n + 2])
            if f" {before} " not in asked and f" {after} " not in asked:
                return True
    return False


def states_answer(thought: str, target: Target, question: str) -> bool:
    """Does the step say what the answer is (the target's text, its option letter, or a yes/no verdict)?"""
    if target.kind == "yesno" and any((m.group(1) or m.group(2) or m.group(3)).lower() == target.norm
                                      for m in _CONCLUSION.finditer(thought.strip())):
        return True
    letter = target.letter or (target.text.strip("(). ") if target.kind == "label" else None)
    if letter and _letter_claim(letter).search(thought):
        return True
    if target.kind in ("label", "yesno"):
        return False  # a yes/no is stated by a verdict or its option's letter, not by the word in passing
    return _mentioned_outside_question(thought, target.norm, question)


def mentions_reference_answer(thought: str, question: str) -> Optional[str]:
    """The phrase naming a reference/standard/given answer, unless the question itself uses it."""
    for match in _REFERENCE.finditer(thought):
        if match.group().lower() not in question.lower():
            return match.group()
    return None


@dataclass(frozen=True)
class Leak:
    step: int  # index within the question's steps
    reason: str
    repaired: bool = False


@dataclass
class QuestionQuality:
    target: Target
    grounded: bool
    leaks: list[Leak] = field(default_factory=list)

    @property
    def leaked(self) -> bool:
        """An unrepaired leak: what the dialogue teaches as sound reasoning."""
        return any(not leak.repaired for leak in self.leaks)


def judge_question(question: str, steps: Sequence[Any], answer: str, choices: Optional[Sequence[str]] = None,
                   prior: Optional[Evidence] = None) -> tuple[QuestionQuality, Evidence]:
    """Grounded and leaked for one question. `steps`: engine `Step`s, parsed `RRStep`s or `StepView`s;
    `choices`: None reads them from the question's text; `prior`: the evidence of the dialogue's earlier
    questions. Returns the verdict and the evidence after this question (for the next one)."""
    views = [s if isinstance(s, StepView) else step_view(s) for s in steps]
    target = answer_target(answer, question_choices(question) if choices is None else choices)
    evidence = prior.copy(question) if prior is not None else Evidence(question)
    leaks: list[Leak] = []
    for index, step in enumerate(views):
        if step.signal == "reflection":
            leaks = [Leak(leak.step, leak.reason, True) for leak in leaks]
            evidence.add_results(step.observations)
            continue
        phrase = mentions_reference_answer(step.thought, question)
        if phrase:
            leaks.append(Leak(index, f"step {index + 1} mentions a {phrase.lower()!r}"))
        elif step.thought and states_answer(step.thought, target, question):
            probe = evidence.copy()  # the step's own calculations and comparisons may show it
            probe.add_thought(step.thought)
            if not probe.supports(target):
                leaks.append(Leak(index, f"step {index + 1} states the answer {target.text!r} before any "
                                         "evidence supports it"))
        evidence.add_thought(step.thought)
        evidence.add_results(step.observations)
    return QuestionQuality(target, evidence.supports(target), leaks), evidence


def judge_dialogue(questions: Sequence[Any]) -> list[QuestionQuality]:
    """`judge_question` over a dialogue's questions in order (each with `.question`, `.steps`, `.answer`,
    like a parsed `RRQuestion`); later questions see the earlier ones' evidence."""
    verdicts, evidence = [], None
    for q in questions:
        verdict, evidence = judge_question(q.question, q.steps, q.answer, prior=evidence)
        verdicts.append(verdict)
    return verdicts


def evidence_of(previous: Sequence[Any]) -> Optional[Evidence]:
    """The evidence earlier questions of a dialogue showed (engine `QATrajectory`s), for the next one."""
    evidence = None
    for qa in previous:
        _, evidence = judge_question(qa.question, qa.steps, qa.final_answer, prior=evidence)
    return evidence


# ------------------------------------------------------------------------------------ duplicates
_SHINGLE = 5
_PERMUTATIONS = 64
SIGNATURE_VALUES = _PERMUTATIONS  # the length of a `minhash` signature
_BANDS = 16
_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20250721)
_A = _rng.integers(1, 1 << 32, _PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 32, _PERMUTATIONS, dtype=np.uint64)


def shingles(text: str) -> set[int]:
    import xxhash

    words = normalise_answer(text).split()
    grams = [" ".join(words[i: i + _SHINGLE]) for i in range(max(1, len(words) - _SHINGLE + 1))]
    return {xxhash.xxh32_intdigest(g.encode("utf-8")) for g in grams if g}


def minhash(text: str) -> np.ndarray:
    """A MinHash signature of the text's word 5-grams (64 values)."""
    values = np.fromiter(shingles(text), dtype=np.uint64)
    if not len(values):
        return np.full(_PERMUTATIONS, np.iinfo(np.uint64).max, dtype=np.uint64)
    hashed = (values[None, :] * _A[:, None] + _B[:, None]) % _MERSENNE
    return hashed.min(axis=1)


class NearDuplicates:
    """Groups of near-duplicate texts by MinHash with LSH banding (candidates share a band), confirmed
    by the signatures' estimated Jaccard similarity: the connected components of the graph whose edges
    join two signatures that share a band and match in at least `threshold` of their values.

    Memory is the signatures alone, 512 bytes a text in one growing array (an audit of a million
    dialogues holds no per-text Python object); the bands are grouped once, in `groups`, by sorting.
    Identical signatures are merged first and the bands compare distinct ones only: N copies of one
    text (a replicated benchmark, a source that repeats its boilerplate) cost N, not N² comparisons."""

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._signatures = np.empty((1024, _PERMUTATIONS), dtype=np.uint64)
        self.count = 0
        self.compared = 0  # signature pairs compared by the last `groups` (distinct signatures only)

    def add(self, signature: np.ndarray) -> int:
        self.add_many(np.asarray(signature)[None, :])
        return self.count - 1

    def add_many(self, signatures: np.ndarray) -> None:
        """`add` each row of a (texts, values) array, in order."""
        needed = self.count + len(signatures)
        if needed > len(self._signatures):
            grown = np.empty((max(needed, 2 * len(self._signatures)), _PERMUTATIONS), dtype=np.uint64)
            grown[: self.count] = self._signatures[: self.count]
            self._signatures = grown
        self._signatures[self.count: needed] = signatures
        self.count = needed

    def groups(self) -> list[list[int]]:
        """Groups of two or more near-duplicates (indices in `add` order), each sorted, in the order of
        their first index."""
        signatures = self._signatures[: self.count]
        if not self.count:
            return []
        # distinct signatures, numbered in the order of their first occurrence; each is read in place
        # (`rep[k]`: the text that first had the k-th distinct signature), never copied out
        first, inverse = _distinct_rows(signatures)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        rep = first[order]
        of_text = rank[inverse]  # text index -> its distinct signature
        parent = list(range(len(rep)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        self.compared = 0
        width = _PERMUTATIONS // _BANDS
        for band in range(_BANDS):
            keys = np.ascontiguousarray(signatures[rep, band * width:(band + 1) * width])
            keys = keys.view(np.dtype((np.void, width * 8))).ravel()
            by_key = np.argsort(keys, kind="stable")  # members of a bucket stay in first-met order
            sorted_keys = keys[by_key]
            bounds = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, [len(keys)]))
            for bucket in np.flatnonzero(np.diff(bounds) > 1).tolist():  # buckets of two or more
                members = by_key[bounds[bucket]:bounds[bucket + 1]]
                for k in range(1, len(members)):
                    similar = np.mean(signatures[rep[members[:k]]] == signatures[rep[members[k]]], axis=1) >= self.threshold
                    self.compared += k
                    for other in members[:k][similar].tolist():
                        a, b = root(int(members[k])), root(other)
                        if a != b:
                            parent[a] = b
        # texts grouped by the root of their signature, as arrays (no Python list per text)
        roots = np.fromiter((root(k) for k in range(len(rep))), dtype=np.int64, count=len(rep))[of_text]
        by_root = np.argsort(roots, kind="stable")  # each group's texts in ascending order
        sorted_roots = roots[by_root]
        bounds = np.concatenate(([0], np.flatnonzero(sorted_roots[1:] != sorted_roots[:-1]) + 1, [len(roots)]))
        groups = [by_root[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()) if b - a > 1]
        return [g.tolist() for g in sorted(groups, key=lambda g: int(g[0]))]


_DISTINCT_CHECK_ROWS = 16384


def _distinct_rows(signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct signature rows: the index of each one's first row, and each row's distinct number
    (as `np.unique(rows, return_index=True, return_inverse=True)[1:]`, numbered in another order), found
    by a 128-bit digest of each row. `np.unique` over the 512-byte rows themselves sorts a copy of the whole
    array (the audit's peak at 200k dialogues: 840 MB). Every row is then compared with the first row of
    its digest, so a digest collision cannot merge two signatures: it falls back to the rows themselves."""
    import xxhash

    rows = np.ascontiguousarray(signatures)
    flat = memoryview(rows).cast("B")
    size = rows.shape[1] * rows.itemsize
    digests = b"".join(xxhash.xxh3_128_digest(flat[i * size:(i + 1) * size]) for i in range(len(rows)))
    _, first, inverse = np.unique(np.frombuffer(digests, dtype="V16"), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for start in range(0, len(rows), _DISTINCT_CHECK_ROWS):
        stop = start + _DISTINCT_CHECK_ROWS
        if not np.array_equal(rows[start:stop], rows[first[inverse[start:stop]]]):
            _, first, inverse = np.unique(rows.view(np.dtype((np.void, size))).ravel(), return_index=True,
                                          return_inverse=True)
            return first, inverse.ravel()
    return first, inverse
