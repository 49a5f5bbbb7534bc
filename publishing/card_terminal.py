"""The dataset card in a terminal (`mmat card`): a rich panel of its YAML facts, then its Markdown body."""
from __future__ import annotations

from typing import Any

from publishing.changelog import split_front_matter


def render_card_terminal(
    text: str,
    *,
    console: Any = None,
    width: int | None = None,
    color: bool | None = None,
    echo: bool = True,
) -> str:
    """Show the card in a terminal with rich: a metadata panel (version, licenses, configs, size), then
    the Markdown body. Prints it (to `console`, default a rich Console on stdout) unless `echo=False`,
    and returns the rendered text (ANSI colours only when `color`; default: when stdout is a terminal)."""
    import io
    import sys

    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.table import Table

    meta, body = split_front_matter(text)
    if color is None:
        color = sys.stdout.isatty()
    buf = io.StringIO()
    out = Console(file=buf, width=width or 100, force_terminal=color, color_system="standard" if color else None,
                  highlight=False)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key in ("pretty_name", "version", "license", "size_categories", "task_categories"):
        if key in meta:
            value = meta[key]
            facts.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if meta.get("source_licenses"):
        facts.add_row("source licenses", ", ".join(f"{k}: {v}" for k, v in meta["source_licenses"].items()))
    if meta.get("configs"):
        facts.add_row("configs", ", ".join(c.get("config_name", "?") for c in meta["configs"]))
    if meta:
        out.print(Panel(facts, title="card metadata", expand=False))
    out.print(Markdown(body))
    rendered = buf.getvalue()
    if echo:
        target = console if console is not None else Console(width=width)
        if meta:
            target.print(Panel(facts, title="card metadata", expand=False))
        target.print(Markdown(body))
    return rendered
