"""Terminal output of `mmat agent` (a trajectory) and `mmat eval` (the report), with rich.

A trajectory is drawn turn by turn with the labels the viewer uses for rows (THOUGHT / OPERATOR / RAG /
SIGNAL, one card per operator result naming its backend); the viewer itself draws HTML, so this is
its terminal counterpart, not a second web renderer. Every string is model or tool output: printed
as text, never as rich markup.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.eval_report import EvalReport
from agent.trajectory import ANSWERED, AgentResult, Observation

_STATUS_STYLE = {ANSWERED: "green", "max_steps": "yellow", "unparsable": "red", "error": "red"}


def _field(label: str, value: str, style: str = "") -> Text:
    text = Text()
    text.append(f"{label:<9}", style="bold " + style)
    text.append(value)
    return text


def _observation(obs: Observation) -> Panel:
    origin = f"{obs.operator} · {obs.backend or 'backend not recorded'}" + (" · cached" if obs.cached else "")
    return Panel(Text(obs.text), title=Text(origin), title_align="left", border_style="cyan")


def trajectory_renderables(result: AgentResult) -> list[Any]:
    parts: list[Any] = []
    images = f" [{result.n_images} image{'s' if result.n_images != 1 else ''}" + (
        "" if result.images_sent or not result.n_images else ", not sent: text-only model") + "]"
    parts.append(Panel(Text(result.question + (images if result.n_images else "")), title="question",
                       title_align="left", border_style="blue"))
    for obs in result.api_outputs:
        parts.append(_observation(obs))
    for name, why in result.skipped.items():
        parts.append(_field("skipped", f"{name}: {why}", "yellow"))
    for index, step in enumerate(result.steps, 1):
        lines = [_field("THOUGHT", step.thought)]
        if step.operators:
            lines.append(_field("OPERATOR", ", ".join(step.operators), "cyan"))
        if step.rag_query:
            lines.append(_field("RAG", step.rag_query, "cyan"))
        lines.append(_field("SIGNAL", step.signal, "magenta"))
        parts.append(Panel(Group(*lines), title=f"step {index}", title_align="left", border_style="white"))
        parts.extend(_observation(obs) for obs in step.observations)
        for name, why in step.skipped.items():
            parts.append(_field("skipped", f"{name}: {why}", "yellow"))
    if result.thought is not None:
        parts.append(Panel(_field("THOUGHT", result.thought), title="reasoning", title_align="left"))
    retries = [call for call in result.calls if call.retry]
    for call in result.calls:
        if not call.parsed:
            parts.append(_field("unparsed", call.text[:500] + ("…" if len(call.text) > 500 else ""), "red"))
    style = _STATUS_STYLE.get(result.status, "red")
    answer = result.answer if result.answer is not None else f"({result.status}: {result.error or 'no answer'})"
    parts.append(Panel(Text(answer), title="answer", title_align="left", border_style=style))
    parts.append(Text(
        f"{result.format} · {result.model} · status {result.status} · {result.turns} model call(s)"
        f"{f' ({len(retries)} retry)' if retries else ''} · {result.tool_calls} tool result(s) · "
        f"{result.tokens:,} tokens · {result.latency_s:.2f} s", style="dim"))
    return parts


def print_trajectory(result: AgentResult, console: Console) -> None:
    for part in trajectory_renderables(result):
        console.print(part, highlight=False)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def report_table(report: EvalReport) -> Table:
    """One row per measure, one column per format: three or four narrow columns whatever the number of
    sources, so the table stays whole in an 80-column pipe or CI log (a column per measure and source
    was 10+ columns and rich cut every header to "ac…")."""
    table = Table(title=f"mmat eval: {report.model} on {report.dataset}", title_justify="left")
    table.add_column("measure", justify="left", overflow="fold")
    formats = list(report.formats.items())
    for fmt, _ in formats:
        table.add_column(fmt, justify="right", overflow="fold")

    def ratio(fmt: str, s: Any) -> str:
        value = report.latency_vs_plain.get(fmt)
        return "1.00×" if fmt == "plain" and s.questions else (f"{value:.2f}×" if value else "–")

    measures: list[tuple[str, Any]] = [
        ("questions", lambda fmt, s: str(s.questions)),
        ("accuracy", lambda fmt, s: _pct(s.accuracy if s.questions else None)),
        *[(f"accuracy: {src}", lambda fmt, s, src=src: _pct(s.source_accuracy(src))) for src in report.sources],
        ("tool calls / question", lambda fmt, s: f"{s.tool_calls:.2f}"),
        ("turns / question", lambda fmt, s: f"{s.turns:.2f}"),
        ("tokens / question", lambda fmt, s: f"{s.tokens:,.0f}"),
        ("latency / question (s)", lambda fmt, s: f"{s.latency_s:.3f}"),
        ("latency vs plain", ratio),
        ("not answered", lambda fmt, s: ", ".join(f"{k} {v}" for k, v in sorted(s.statuses.items())
                                                  if k != ANSWERED) or "0"),
    ]
    for name, cell in measures:
        table.add_row(name, *[cell(fmt, s) for fmt, s in formats])
    return table


def print_report(report: EvalReport, console: Console) -> None:
    console.print(report_table(report))
    if report.latency_vs_plain:
        console.print("latency ratios (mean per question): " + ", ".join(
            f"{fmt} / plain = {ratio:.2f}×" for fmt, ratio in report.latency_vs_plain.items()), highlight=False)
