"""A TabMWP table as the OCR read it, and the source's solution rewritten from those readings (offline teacher).

Why: a thought may cite only values a tool returned (issue 29). TabMWP ships the clean table (`table_for_pd`)
and a worked solution, but the model sees the table only as an image, read here by `ocr`. So the thought is
built from the OCR text, cell by cell:

- a cell the OCR read as written is cited as written;
- a cell the OCR misread without changing its numbers (`$2/1b` for `$2/lb`, `Kevn` for `Kevin`) is cited
  as the OCR wrote it, then what it is taken to mean: `"$2/1b", i.e. $2/lb`;
- a cell whose numbers the OCR lost or changed is not cited (no tool returned its value).

Then the solution's sentences, each kept only when every number in it is one the evidence knows (the OCR's,
the question's, a small constant, or one an earlier sentence derived by arithmetic written out). Two kinds
of solution state their result without arithmetic, and get it written out from the OCR: "Count by fives."
(`6 × 5 = 30`) and a stem-and-leaf count ("You counted 9 leaves": each stem's leaves, then `3 + 4 + 2 = 9`).
A sentence with a number no tool returned makes the derivation fail (`derive_from_ocr` returns None): the
teacher then uses the solution as the source's own rationale, marked as such.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Optional

from generation.quality.definitions import Evidence

_DIGITS = re.compile(r"\d[\d,]*(?:\.\d+)?")
_COUNT_BY = re.compile(r"\bcount by (two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundred)e?s\b", re.I)
_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
                "twenty": 20, "fifty": 50, "hundred": 100}
_STEMS = re.compile(r"rows? with stems? ((?:\d+(?:,\s*|\s+and\s+|\s*)?)+)", re.I)
_COUNTED = re.compile(r"\byou counted (\d+) leaves\b", re.I)
_MIN_RATIO = 0.6
_HIGHLIGHT = re.compile(r",?\s*which (?:is|are) (?:blue|highlighted|shaded)[^.]*", re.I)


@dataclass(frozen=True)
class Reading:
    value: str  # the cell as the source's table writes it
    read: Optional[str]  # what the OCR wrote for it (None: not found)

    @property
    def exact(self) -> bool:
        return self.read is not None and _norm(self.read) == _norm(self.value)

    @property
    def usable(self) -> bool:
        """Read with its numbers (the cell's numbers are digit runs of the reading, in order: `$2/1b` has the
        2 of `$2/lb`; `04` is the leaves `0 4`): citing it cites what the tool returned."""
        if self.read is None:
            return False
        if re.sub(r"\s", "", self.read).lower() == re.sub(r"\s", "", self.value).lower():
            return True
        wanted, got = _values(self.value), iter(_values(self.read))
        return all(any(v == g for g in got) for v in wanted)

    def cited(self) -> str:
        return self.value if self.exact else f'"{self.read}", i.e. {self.value}'


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _values(text: str) -> list[float]:
    return [float(d.replace(",", "")) for d in _DIGITS.findall(str(text))]


def read_cell(value: str, lines: list[list[str]]) -> Reading:
    """How the OCR (its text as lines of tokens) read one cell: exactly, or the closest run of tokens."""
    value = str(value).strip()
    if not value:
        return Reading(value, "")
    wanted = _norm(value)
    if any(f" {wanted} " in f" {' '.join(tokens).lower()} " for tokens in lines):
        return Reading(value, value)
    size = len(value.split())
    best, best_ratio = None, _MIN_RATIO
    for tokens in lines:
        for n in range(1, size + 2):  # the OCR may merge words (`24568` for the leaves `2 4 5 6 8`)
            for i in range(len(tokens) - n + 1):
                window = " ".join(tokens[i: i + n])
                ratio = SequenceMatcher(None, wanted, window.lower()).ratio()
                if ratio > best_ratio:
                    best, best_ratio = window, ratio
    return Reading(value, best)


def table_readings(ocr_text: str, table_for_pd: Any) -> tuple[list[Reading], list[list[Reading]]]:
    """(the column names' readings, rows of the cells' readings) of `table_for_pd` (column -> cells)."""
    if not isinstance(table_for_pd, dict) or not table_for_pd:
        return [], []
    lines = [line.split() for line in ocr_text.splitlines() if line.strip()]
    columns = [read_cell(str(c), lines) for c in table_for_pd]
    cells = [list(v) if isinstance(v, (list, tuple)) else [v] for v in table_for_pd.values()]
    rows = [[read_cell(str(col[i]), lines) for col in cells if i < len(col)] for i in range(max(map(len, cells)))]
    return columns, rows


def title_reading(ocr_text: str, title: Optional[str]) -> Optional[Reading]:
    return read_cell(title, [line.split() for line in ocr_text.splitlines() if line.strip()]) if title else None


def table_sentence(title: Optional[Reading], columns: list[Reading], rows: list[list[Reading]], limit: int = 40) -> str:
    """The rows as the OCR read them (usable cells only): `name: cell` for two columns, `name: column cell,
    column cell` for more, rows joined by `; `. The title and the column names as the OCR wrote them."""
    heads = [c.read if c.read is not None else "" for c in columns]
    listed = []
    for row in rows[:limit]:
        if not row or not row[0].usable:
            continue
        rest = [(h, r) for h, r in zip(heads[1:], row[1:]) if r.usable and r.value]
        cells = ", ".join(r.cited() if len(columns) == 2 else f"{h} {r.cited()}".strip() for h, r in rest)
        listed.append(f"{row[0].cited()}: {cells}" if cells else row[0].cited())
    if not listed:
        return ""
    named = f' "{title.read}"' if title is not None and title.read else ""
    shown = f" ({' | '.join(h for h in heads if h)})" if any(heads) else ""
    text = f"The ocr result shows the table{named}{shown}: " + "; ".join(listed)
    return text if text.endswith(".") else text + "."


def _sentence_known(sentence: str, evidence: Evidence, shown: set[float], cells: frozenset[float] = frozenset()) -> bool:
    """Is every number `sentence` writes known: a digit run of the tool results (`shown`), a number the
    evidence knows, or one the sentence's own arithmetic derives from those? A value of the source's table
    (`cells`) counts only when shown or derived: a small one is a constant of arithmetic to the evidence
    (`12`), but citing the table's 12 the OCR did not return cites a value no tool returned."""
    derived = evidence.derivations(sentence)

    def known(v: float) -> bool:
        made = any(abs(v - d) <= 1e-9 * max(1.0, abs(d)) for d in derived + evidence.derived)
        return v in shown or made or (v not in cells and evidence.known(v))

    return all(known(v) for v in _values(sentence))


def _count_by(sentences: list[str], question: str) -> Optional[list[str]]:
    """"Count by fives." written out: the question's last number times the step (`6 × 5 = 30`)."""
    match = next((m for s in sentences for m in [_COUNT_BY.search(s)] if m), None)
    numbers = _values(question)
    if not match or not numbers:
        return None
    step, times = _COUNT_WORDS[match.group(1).lower()], numbers[-1]
    return [f"Count by {match.group(1).lower()}s: each row of the table adds {step}.",
            f"For {times:g}: {times:g} × {step} = {times * step:g}."]


def _stem_leaf(sentences: list[str], ocr_text: str) -> Optional[tuple[list[str], set[float]]]:
    """"You counted 9 leaves" written out from the OCR's stem-and-leaf rows (`stem leaf leaf …`, the leaves
    often run together: `24568`), and the numbers that reading gives (each leaf, each row's count)."""
    stems_at = next((m for s in sentences for m in [_STEMS.search(s)] if m), None)
    if not stems_at:
        return None
    stems = [int(v) for v in re.findall(r"\d+", stems_at.group(1))]
    rows: dict[int, list[str]] = {}
    for line in ocr_text.splitlines():
        tokens = line.replace("|", " ").split()
        if len(tokens) >= 2 and tokens[0].isdigit() and all(t.isdigit() for t in tokens[1:]):
            rows.setdefault(int(tokens[0]), list("".join(tokens[1:])))  # OCR may join the leaves: "147"
    if not all(s in rows for s in stems):
        return None
    counts = [len(rows[s]) for s in stems]
    out = [f"Stem {s}: leaves {', '.join(rows[s])} ({len(rows[s])} {'leaf' if len(rows[s]) == 1 else 'leaves'})."
           for s in stems]
    total = sum(counts)
    out.append(f"Counting them: {' + '.join(map(str, counts))} = {total}." if len(counts) > 1 else f"That is {total}.")
    return out, {float(v) for s in stems for v in rows[s]} | {float(c) for c in counts}


def punctuated(sentences: list[str]) -> list[str]:
    """Solution lines as sentences: a line ending in ":" joined to the next, a line without an end mark
    (`Dmitri: 54`, `12 + 9 = 21`) given a period."""
    out: list[str] = []
    for sentence in sentences:
        if out and out[-1].endswith(":"):
            out[-1] = f"{out[-1]} {sentence}"
        else:
            out.append(sentence)
    out = [_HIGHLIGHT.sub("", s) for s in out]  # the plot the annotators coloured is not the image the model sees
    return [s if s.endswith((".", "?", "!")) else s + "." for s in out]


def derive_from_ocr(solution_sentences: list[str], question: str, ocr_text: str,
                    prior: Optional[Evidence] = None, table_cells: Any = ()) -> tuple[list[str], list[float]]:
    """(the solution's sentences whose numbers the tool results show or its arithmetic derives, with the
    counts a solution states without arithmetic written out; the numbers the solution uses that no tool
    returned). The derivation stands on tool evidence only when the second list is empty. `table_cells`: the
    source table's cells, whose values must be shown (not merely small)."""
    evidence = prior.copy(question) if prior is not None else Evidence(question)
    evidence.add_result(ocr_text)
    shown = set(_values(ocr_text)) | set(_values(question))
    cells = frozenset(v for cell in table_cells for v in _values(str(cell))) - shown
    kept: list[str] = []
    missing: list[float] = []
    count_by = _count_by(solution_sentences, question)
    stem_leaf, read = _stem_leaf(solution_sentences, ocr_text) or (None, set())
    shown |= read
    for sentence in punctuated(solution_sentences):
        # Results a solution states without arithmetic, written out from the OCR in their place.
        extra = count_by if count_by and _COUNT_BY.search(sentence) else (
            stem_leaf if stem_leaf and _COUNTED.search(sentence) else None)
        for line in extra or ():
            if not _sentence_known(line, evidence, shown, cells):
                break
            evidence.add_thought(line)
            kept.append(line)
        if count_by and _COUNT_BY.search(sentence):
            continue
        if _sentence_known(sentence, evidence, shown, cells):
            evidence.add_thought(sentence)
            kept.append(sentence)
        else:
            missing += [v for v in _values(sentence)
                        if (v in cells or not evidence.known(v)) and v not in shown and v not in missing]
    return kept, missing
