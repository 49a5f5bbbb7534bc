"""The card's Quality section: an `AuditReport` (`generation.quality.audit`) as Markdown, RR and ORR side
by side, and its figure. Row ids are data: in Markdown they pass `publishing.examples.md_text`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from generation.quality.audit import FAILING_KINDS, AuditReport, GroupStats
from generation.quality.definitions import LONG_ANSWER_WORDS
from generation.quality.report import _KIND_TITLES, _SIDE_BY_SIDE, COLUMNS, _rate, row_cells, table_rows
from publishing.examples import md_text


def report_markdown(report: AuditReport, figure: Optional[str] = None, subsets: bool = False) -> str:
    """The card's Quality section body (no heading)."""
    lines = [
        f"Measured on the `{report.config}` rows by `mmat audit` (`generation/quality/`), the same definitions the "
        "engine uses for `meta.grounded` and its reflection checks. **Verified**: the final answer matches the "
        "reference. **Grounded (tool)**: every answer (for a choice question, the chosen option's text) is "
        "supported by evidence shown before the final turn: an operator result, a retrieved passage, or arithmetic "
        "written out from those (yes/no answers: the evidence speaks about what is asked; answers over "
        f"{LONG_ANSWER_WORDS} words: most of their content words are in it). **Grounded (source rationale)**: "
        "not by the tools, but by the source's own rationale (LLaVA-CoT's reasoning, TabMWP's solution, "
        "Visual-CoT's box), which the thought quotes as such: counted apart, it is the annotation's word, not "
        "a tool's. **Admits no evidence**: a question's last thought says it could not confirm the answer, and "
        "an answer follows. `teacher.require_grounding` defaults to `auto`: on for the offline teacher, whose tools "
        "are all the evidence it has (a sample no evidence supports, or that admits it, is quarantined), off for a "
        "model teacher, whose own reading of the image is evidence this audit cannot see. "
        "**Leaked**: a step states the answer "
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
    lines += _side_by_side(report)
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


def _side_by_side(report: AuditReport) -> list[str]:
    """The RR and ORR rows' measures next to each other (ORR compresses the final RR trajectory: a good
    ORR row is as grounded and as free of leaks as its RR row), the ORR compression's own defects, and the
    repairs: accepted (a reflection in a row) and rejected (a sample quarantined because its reflection did
    not repair; known at the end of a run)."""
    pair = report.paired
    lines: list[str] = []
    if pair is not None:
        rr, orr = (report, pair) if report.config.startswith("rr") else (pair, report)
        head = ["dialogues"] + [title for title, _ in _SIDE_BY_SIDE] + ["ORR: repeated sentence", "ORR: replaced step"]
        lines += ["RR and ORR side by side (each cell: RR / ORR dialogues; ORR compresses the final RR "
                  "trajectory, so its counts should match RR's and its own defects be 0):", "",
                  "| source | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
        for name, group in table_rows(rr):
            other = orr.total if name == "total" else orr.groups.get(name, GroupStats())
            cells = [f"{group.dialogues:,} / {other.dialogues:,}"]
            cells += [f"{getattr(group, key):,} / {getattr(other, key):,}" for _, key in _SIDE_BY_SIDE]
            cells += [f"{other.repeated_sentence:,}", f"{other.replaced_in_orr:,}"]
            lines.append(f"| {md_text(name.strip())} | " + " | ".join(cells) + " |")
        lines.append("")
    rejected = report.repairs_rejected
    lines += [f"Repairs: **{report.total.repairs:,}** accepted (rows whose reflection passed the check it "
              "answered)" + (f", **{rejected:,}** rejected (samples quarantined: the reflection did not repair)"
                             if rejected is not None else "") + ".", ""]
    return lines


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
    from generation.atomic import atomic_file

    with atomic_file(path, suffix=".png") as fh:  # a published figure is whole or absent
        fig.savefig(fh, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
