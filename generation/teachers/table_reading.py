"""Reading a table from its OCR text and deriving an answer from it, step by step, for the offline teacher.

Guarantee: every sentence it writes comes from the OCR text and the question alone (never from the source's
reference answer or reasoning): the rows and values it lists are the OCR's, and each result is written out
so the quality definitions (`generation.quality.definitions`) can check it — a superlative as the column's
values and the extreme one, a count as the matching rows and `1 + 1 + … = n`, a total as `a + b = c`. The
caller decides whether the result is the answer; a question it cannot parse, or a table it cannot read,
gives nothing.

The table: OCR lines; a row is a line with at least one number: the words before its first number are
the row's name, then its numbers, then any trailing words (a text column such as "easy"). The header is
the line before the first row. A column is found by the question's word in the header (units in
parentheses dropped), counting the header's first word as the name column: "Team wins Losses Points" and
"Harbor City 14 3 45" give Points = the third number. A heuristic: when it reads the wrong column the
result does not match and the teacher says it cannot confirm the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from generation.verify import parse_numbers

_NUMBER = re.compile(r"^[$€£¥]?-?\d[\d,]*(?:\.\d+)?%?$")
_MOST = ("most", "highest", "largest", "biggest", "greatest", "longest", "tallest", "heaviest", "oldest", "maximum")
_LEAST = ("least", "fewest", "lowest", "smallest", "shortest", "lightest", "youngest", "cheapest", "minimum")
# Superlatives that name their column by meaning rather than by a word after them.
_ADJECTIVE_COLUMNS = {"longest": ("length", "distance", "long"), "shortest": ("length", "distance", "height"),
                      "tallest": ("height", "tall"), "heaviest": ("weight", "mass"), "lightest": ("weight", "mass"),
                      "oldest": ("age", "year"), "youngest": ("age", "year"), "cheapest": ("price", "cost")}
_ABOVE = ("more", "greater", "over", "above", "higher")
_BELOW = ("less", "fewer", "under", "below", "lower")


@dataclass
class Row:
    name: str
    numbers: list[str]  # as written (`$4.95`, `45`)
    words: list[str]  # trailing text cells' words


@dataclass
class Table:
    header: list[str]  # header words, units dropped, lower case
    rows: list[Row]

    def column(self, words: list[str]) -> Optional[int]:
        """The index into `Row.numbers` of the first header word among `words` (see the module docstring)."""
        for word in words:
            for index, head in enumerate(self.header):
                if head.rstrip("s") == word.rstrip("s") and index >= 1:
                    column = index - 1
                    if all(column < len(row.numbers) for row in self.rows):
                        return column
        return 0 if all(len(row.numbers) == 1 for row in self.rows) else None

    def heading(self, column: int) -> str:
        return self.header[column + 1].capitalize()


def read_table(text: str) -> Optional[Table]:
    """The table in an OCR result, or None when fewer than two lines read as rows."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    rows, first = [], None
    for index, tokens in enumerate(lines):
        at = next((i for i, t in enumerate(tokens) if _NUMBER.match(t)), None)
        if at is None or at == 0:
            continue
        numbers = [t for t in tokens[at:] if _NUMBER.match(t)]
        words = [t.lower() for t in tokens[at:] if not _NUMBER.match(t)]
        rows.append(Row(" ".join(tokens[:at]), numbers, words))
        first = index if first is None else first
    if len(rows) < 2 or not first:
        return None
    header = [t.lower() for t in lines[first - 1] if not re.fullmatch(r"\(.*\)", t)]
    return Table(header, rows)


def _value(cell: str) -> float:
    return parse_numbers(cell)[0]


def _count_sentence(names: list[str]) -> str:
    if len(names) >= 2:
        return f"Counting them: {' + '.join('1' for _ in names)} = {len(names)}."
    return f"That is {len(names)}." if names else "None of the rows does."


def derive(question: str, table: Table) -> Optional[tuple[list[str], str]]:
    """(sentences that derive a result from `table`, the result) for a superlative, a count of rows or a
    total over the first rows; None when the question is none of these or the table lacks the column."""
    q = question.lower().rstrip("?. ")
    words = re.findall(r"[a-z]+", q)
    superlative = next((w for w in words if w in _MOST + _LEAST), None)
    if q.startswith(("which", "what", "who")) and superlative:
        after = words[words.index(superlative) + 1:]
        column = table.column(after[:2] + list(_ADJECTIVE_COLUMNS.get(superlative, ())))
        if column is None:
            return None
        values = [(row.name, row.numbers[column]) for row in table.rows]
        best = (max if superlative in _MOST else min)(values, key=lambda v: _value(v[1]))
        extreme = "largest" if superlative in _MOST else "smallest"
        listed = ", ".join(f"{name} {cell}" for name, cell in values)
        return [f"{table.heading(column)}: {listed}.", f"The {extreme} is {best[1]}, {best[0]}."], best[0]
    threshold = re.search(r"how many \w+ .*?\b(" + "|".join(_ABOVE + _BELOW) + r") than ([$\d.,]+)\s*(\w+)?", q)
    if threshold:
        direction, limit, noun = threshold.groups()
        column = table.column([noun] if noun else [])
        if column is None:
            return None
        above = direction in _ABOVE
        bound = _value(limit)
        matches = [(row.name, row.numbers[column]) for row in table.rows
                   if (_value(row.numbers[column]) > bound if above else _value(row.numbers[column]) < bound)]
        sign = ">" if above else "<"
        listed = ", ".join(f"{name} {cell} {sign} {limit}" for name, cell in matches)
        heading = f"{table.heading(column)} {'above' if above else 'below'} {limit}"
        return [f"{heading}: {listed or 'none'}.", _count_sentence([n for n, _ in matches])], str(len(matches))
    rated = re.search(r"how many \w+ (?:are|is|were|was) (?:rated |marked |listed as |labelled )?([a-z]+)$", q)
    if rated:
        value = rated.group(1)
        matches = [row.name for row in table.rows if value in row.words]
        if not matches or not all(row.words for row in table.rows):
            return None
        return [f"Rows marked {value}: {', '.join(matches)}.", _count_sentence(matches)], str(len(matches))
    total = re.search(r"\b(?:total|sum|combined)\b(?: number of)? (\w+)(?: of (?:the )?(?:top|first) (\w+))?", q)
    if total:
        column = table.column([total.group(1)])
        top = total.group(2)
        top_count = parse_numbers(top) if top else []  # "top three" / "top 3" (the verifier's number words)
        count = int(top_count[0]) if top_count else len(table.rows)
        if column is None or count < 2 or count > len(table.rows):
            return None
        cells = [(row.name, row.numbers[column]) for row in table.rows[:count]]
        amount = sum(_value(cell) for _, cell in cells)
        result = f"{amount:g}"
        where = f"the top {top} (the first {count} rows)" if top else "every row"
        listed = ", ".join(f"{name} {cell}" for name, cell in cells)
        return [f"{table.heading(column)} of {where}: {listed}.",
                f"{' + '.join(cell for _, cell in cells)} = {result}."], result
    return None
