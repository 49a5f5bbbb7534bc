"""How an `AuditReport` reads in the terminal (`mmat audit`), and the table cells it shares with the card's
Quality section (rendered in `publishing.quality_section`: `generation/` renders no card)."""
from __future__ import annotations

from typing import Any, Optional

from generation.quality.audit import FAILING_KINDS, AuditReport, GroupStats

_KIND_TITLES = {
    "not_verified": "final answer differs from the reference",
    "not_grounded": "answer not supported by the tool evidence shown",
    "admits_no_evidence": "an answer after the reasoning says it could not confirm it",
    "leaked": "a step states the answer before the evidence (unrepaired)",
    "repeated_sentence": "ORR: a sentence repeated within one turn",
    "replaced_step_in_orr": "ORR: a step a reflection replaced is still said",
    "exact_duplicate": "exact duplicate",
    "near_duplicate": "near-duplicate",
    "unparsable": "does not parse as its format",
}


def _rate(group: GroupStats, name: str) -> str:
    value = group.rate(name)
    if value is None:
        return "–"
    count = group.verified if name == "verified" else getattr(group, name)
    of = group.verified_known if name == "verified" else group.dialogues
    return f"{value:.2f} ({count:,}/{of:,})"


def _reflections(group: GroupStats, kind: str) -> str:
    check, staged = group.reflection_count(kind, "check"), group.reflection_count(kind, "staged")
    other = group.reflection_count(kind) - check - staged
    text = f"{check:,} / {staged:,}"
    return text + (f" (+{other:,} unrecorded)" if other else "")


def _math(group: GroupStats) -> str:
    if not group.math_dialogues:
        return "–"
    return f"{group.math_reflected / group.math_dialogues:.2f} ({group.math_reflected:,}/{group.math_dialogues:,})"


def table_rows(report: AuditReport, subsets: bool = False) -> list[tuple[str, GroupStats]]:
    rows = []
    for source in report.sources():
        rows.append((source, report.groups[source]))
        if subsets:
            rows += [(f"  {key}", report.groups[key]) for key in report.subsets(source)]
    rows.append(("total", report.total))
    return rows


COLUMNS = ("source", "dialogues", "verified", "grounded (tool)", "grounded (source rationale)", "admits no evidence",
           "leaked", "general reflections (check / staged)", "math reflections (check / staged)",
           "math dialogues with a math reflection", "steps", "turns", "tokens", "images")
_RATE_COLUMNS = 7  # source, dialogues, verified, grounded (tool, rationale), admits, leaked: the terminal's first table
_SIDE_BY_SIDE = (("grounded (tool)", "grounded"), ("grounded (source rationale)", "grounded_rationale"),
                 ("admits no evidence", "admits_no_evidence"), ("leaked", "leaked"))


def row_cells(name: str, g: GroupStats) -> list[str]:
    return [name, f"{g.dialogues:,}", _rate(g, "verified"), _rate(g, "grounded"), _rate(g, "grounded_rationale"),
            _rate(g, "admits_no_evidence"), _rate(g, "leaked"),
            _reflections(g, "general"), _reflections(g, "math"), _math(g),
            f"{g.per_dialogue('steps'):.1f}", f"{g.per_dialogue('turns'):.1f}", f"{g.per_dialogue('tokens'):.0f}",
            f"{g.per_dialogue('images'):.1f}"]


# The terminal's headers of the third table: the long names folded into columns of letters at 80 columns.
_TERMINAL_HEADERS = {"general reflections (check / staged)": "general",
                     "math reflections (check / staged)": "math",
                     "math dialogues with a math reflection": "math dialogues repaired"}


def _short_name(name: str) -> str:
    """`  source/subset` -> `  subset` (the row sits under its source's); other names as they are."""
    if name.startswith("  ") and "/" in name:
        return "  " + name.strip().split("/", 1)[1]
    return name


def print_report(report: AuditReport, console: Any, viewer_hint: bool = True, revision: Optional[str] = None) -> None:
    """`mmat audit`'s terminal output: the table per source and subset, operators, duplicates, examples.
    `revision`: the Hub revision audited, kept in the `mmat view` hint."""
    from rich.markup import escape
    from rich.table import Table

    # two tables of the same rows (the rates, then reflections and lengths): one table of all the columns
    # folds every cell into a column of letters on an 80-column terminal
    # A subset row names only its subset, under its source's row ("  docvqa", not "  visual_cot/docvqa"),
    # and the name column never wraps: in an 80-column pipe the full names broke across lines.
    rows = [(name, [escape(c) for c in row_cells(_short_name(name), group)])
            for name, group in table_rows(report, subsets=True)]
    for title, columns in ((f"quality of {escape(report.dataset)} ({report.config})", [0, 1, 2, 3, 6]),
                           ("evidence of other kinds", [0, 4, 5]),
                           ("reflections (check / staged)", [0, _RATE_COLUMNS, _RATE_COLUMNS + 1, _RATE_COLUMNS + 2]),
                           ("lengths (per dialogue)", [0, *range(_RATE_COLUMNS + 3, len(COLUMNS))])):
        table = Table(title=title, title_justify="left")
        for i in columns:
            table.add_column(_TERMINAL_HEADERS.get(COLUMNS[i], COLUMNS[i]), justify="left" if i == 0 else "right",
                             overflow="fold", no_wrap=i == 0)
        for name, cells in rows:
            table.add_row(*[cells[i] for i in columns], style="bold" if name == "total" else None)
        console.print(table)
    ops = Table(title="operator calls (dialogues using it)", title_justify="left")
    operators = list(report.total.operator_calls)
    ops.add_column("source")
    for name in operators:
        ops.add_column(name, justify="right")
    for name, group in table_rows(report):
        ops.add_row(escape(name), *[f"{group.operator_calls.get(op, 0):,} ({group.operator_dialogues.get(op, 0):,})"
                                    for op in operators])
    if operators:
        console.print(ops)
    console.print(f"exact duplicates: {report.exact_duplicates:,}; near-duplicates: {report.near_duplicates:,}"
                  + (f"; ORR/RR token ratio: {report.token_ratio:.2f}" if report.token_ratio is not None else ""),
                  highlight=False, markup=False)
    histogram = report.judge_histogram()
    console.print("judge scores: " + (", ".join(f"{label}: {n:,}" for label, n in histogram) if histogram else "none"),
                  highlight=False, markup=False)
    for kind in FAILING_KINDS:
        items = report.examples.get(kind) or []
        if items:
            console.print(f"{_KIND_TITLES[kind]}:", highlight=False, markup=False)
            for item in items:
                console.print(f"  {item['id']}" + (f"  ({item['why']})" if item.get("why") else ""),
                              highlight=False, markup=False, soft_wrap=True)
    if viewer_hint and any(report.examples.get(k) for k in FAILING_KINDS):
        at = f" --revision {revision}" if revision else ""
        console.print(f"open one: mmat view {report.dataset}{at} --config {report.config}, then add #<id> to the address",
                      highlight=False, markup=False, soft_wrap=True)
