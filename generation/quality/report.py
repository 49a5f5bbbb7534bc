"""How an `AuditReport` reads: the card's Quality section (Markdown), its figure, and the terminal tables
of `mmat audit`. Row ids are data: in Markdown they pass `publishing.examples.md_text`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from generation.quality.audit import FAILING_KINDS, AuditReport, GroupStats

_KIND_TITLES = {
    "not_verified": "final answer differs from the reference",
    "not_grounded": "answer not supported by the evidence shown",
    "leaked": "a step states the answer before the evidence (unrepaired)",
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


COLUMNS = ("source", "dialogues", "verified", "grounded", "leaked", "general reflections (check / staged)",
           "math reflections (check / staged)", "math dialogues with a math reflection", "steps", "turns", "tokens",
           "images")
_RATE_COLUMNS = 5  # source, dialogues, verified, grounded, leaked: the terminal's first table


def row_cells(name: str, g: GroupStats) -> list[str]:
    return [name, f"{g.dialogues:,}", _rate(g, "verified"), _rate(g, "grounded"), _rate(g, "leaked"),
            _reflections(g, "general"), _reflections(g, "math"), _math(g),
            f"{g.per_dialogue('steps'):.1f}", f"{g.per_dialogue('turns'):.1f}", f"{g.per_dialogue('tokens'):.0f}",
            f"{g.per_dialogue('images'):.1f}"]


def report_markdown(report: AuditReport, figure: Optional[str] = None, subsets: bool = False) -> str:
    """The card's Quality section body (no heading)."""
    from generation.quality.definitions import LONG_ANSWER_WORDS
    from publishing.examples import md_text

    lines = [
        f"Measured on the `{report.config}` rows by `mmat audit` (`generation/quality/`), the same definitions the "
        "engine uses for `meta.grounded` and its reflection checks. **Verified**: the final answer matches the "
        "reference. **Grounded**: every answer (for a choice question, the chosen option's text) is supported by "
        "evidence shown before the final turn: an operator result, a retrieved passage, or arithmetic written out "
        "from those (yes/no answers: the evidence speaks about what is asked; answers over "
        f"{LONG_ANSWER_WORDS} words: most of their content words are in it). **Leaked**: a step states the answer "
        "before any evidence supports it, or mentions a reference answer, and no reflection repairs it. "
        "Reflections are counted by origin: found by a check on what was written, or staged at "
        "`reflection.staged_rate`. Steps, turns, tokens and images are per dialogue.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for name, group in table_rows(report, subsets):
        cells = row_cells(md_text(name.strip()), group)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    facts = [f"Exact duplicate dialogues: **{report.exact_duplicates:,}**; near-duplicates (word 5-gram Jaccard ≥ "
             f"0.9): **{report.near_duplicates:,}**."]
    if report.token_ratio is not None:
        facts.append(f"ORR/RR token ratio: **{report.token_ratio:.2f}**.")
    histogram = report.judge_histogram()
    if histogram:
        facts.append("Judge scores: " + ", ".join(f"{label}: {n:,}" for label, n in histogram) + ".")
    else:
        facts.append("No judge scores in these rows.")
    lines += [" ".join(facts), ""]
    failing = [(kind, report.examples.get(kind) or []) for kind in FAILING_KINDS]
    failing = [(kind, items) for kind, items in failing if items]
    if failing:
        lines.append("Examples (ids; `mmat view` opens one at `#<id>`):")
        lines.append("")
        for kind, items in failing:
            ids = ", ".join(md_text(item["id"], 200) for item in items)
            lines.append(f"- {_KIND_TITLES[kind]}: {ids}")
        lines.append("")
    if figure:
        lines += [f"![Verified, grounded and leaked per source]({figure})", ""]
    return "\n".join(lines)


def render_figure(report: AuditReport, path: str | Path) -> Path:
    """Verified, grounded and leaked rates per source (and in total), as one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = report.sources() + ["total"]
    groups = [report.groups[n] for n in names]
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    x = np.arange(len(names))
    for k, measure in enumerate(("verified", "grounded", "leaked")):
        values = [g.rate(measure) or 0.0 for g in groups]
        ax.bar(x + (k - 1) * 0.27, values, width=0.27, label=measure)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"share of {report.config.upper()} dialogues")
    ax.set_title("Data quality per source")
    ax.legend(ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def print_report(report: AuditReport, console: Any, viewer_hint: bool = True) -> None:
    """`mmat audit`'s terminal output: the table per source and subset, operators, duplicates, examples."""
    from rich.markup import escape
    from rich.table import Table

    # two tables of the same rows (the rates, then reflections and lengths): one table of all the columns
    # folds every cell into a column of letters on an 80-column terminal
    rows = [(name, [escape(c) for c in row_cells(name, group)]) for name, group in table_rows(report, subsets=True)]
    for title, columns in ((f"quality of {escape(report.dataset)} ({report.config})", range(0, _RATE_COLUMNS)),
                           ("reflections and lengths (per dialogue)", [0, *range(_RATE_COLUMNS, len(COLUMNS))])):
        table = Table(title=title, title_justify="left")
        for i in columns:
            table.add_column(COLUMNS[i], justify="left" if i == 0 else "right", overflow="fold")
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
        console.print(f"open one: mmat view {report.dataset} --config {report.config}, then add #<id> to the address",
                      highlight=False, markup=False, soft_wrap=True)
