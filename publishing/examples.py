"""The dataset card's example dialogues: one per source, as readable markdown with its image.

Which row: among the first row group of the source's first RR train shard (validation when it has no
train rows; ORR when there is no RR), the first row with operator results and a reflection, else the
first with operator results, else the first. Reading one row group keeps the card's cost flat however
large the dataset is.

The turns come from the viewer's reading of a row (`viewer.view.dialogue_view` over
`viewer.parsed`), so the card and `mmat view` show the same thing: labelled THOUGHT / OPERATOR / RAG
/ SIGNAL blocks, operator results, the reflection request and the repaired step, the final answer
beside the reference answer. Backends are not named here (the card is a function of the shards; the
backend lives in the run's work folder).

Rows are untrusted text: every string from a row is HTML-escaped and its Markdown punctuation
backslash-escaped (`md_text`), so a `<script>` or `**` in a question shows as those characters on the
Hub. Images go to `figures/examples/{source}.jpg` (downsized), which `mmat push` uploads with the card.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Optional

from mmat_1m import FORMATS, SOURCES, SPLITS

EXAMPLES_DIR = "figures/examples"
IMAGE_SIDE = 512
MAX_TEXT = 600
# Inline Markdown punctuation; block markers cannot start a line, as every text is one line (`<br>` joins).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(text: Optional[str], limit: int = MAX_TEXT) -> str:
    """Row text as inert Markdown on one line: HTML-escaped, inline punctuation backslash-escaped, cut at
    `limit` characters, line breaks as `<br>`."""
    text = text or ""
    if len(text) > limit:
        text = text[:limit].rstrip() + " …"
    lines = [_MD_SPECIAL.sub(r"\\\1", html.escape(line, quote=False)) for line in text.splitlines() or [""]]
    return "<br>".join(lines)


def _pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def has_results(row: dict) -> bool:
        return any(s.get("observations") for s in row.get("steps") or ())

    def reflected(row: dict) -> bool:
        return (row.get("reflection") or {}).get("kind") not in (None, "", "none")

    return (next((r for r in rows if has_results(r) and reflected(r)), None)
            or next((r for r in rows if has_results(r)), None) or rows[0])


def pick_examples(dataset_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """(row, split) per source present, in SOURCES order (then any other source)."""
    from viewer.store import ShardStore

    store = ShardStore.from_folder(Path(dataset_dir))
    fmt = next(f for f in FORMATS if f in store.formats())
    picked = []
    for source in store.sources(fmt):
        for split in SPLITS:
            shards = [s for s in store.shards_of(fmt) if s.source == source and s.split == split and s.num_rows]
            if shards:
                first = shards[0]
                size = int(first.starts[1] - first.starts[0]) if len(first.starts) > 1 else first.num_rows
                picked.append((_pick([store.row(first, i) for i in range(size)]), split))
                break
    order = {s: i for i, s in enumerate(SOURCES)}
    return sorted(picked, key=lambda p: order.get(p[0]["source"], len(order)))


def _blocks(blocks: list[dict]) -> list[str]:
    out = []
    for block in blocks:
        if block.get("items") is not None:
            out.append(f"> **{block['label']}** " + ", ".join(md_text(item, 80) for item in block["items"]))
        else:
            out.append(f"> **{block['label']}** {md_text(block.get('text'))}")
    return out


# Whose defect a reflection repairs: a staged one must not read as the teacher's own mistake.
_ORIGIN_NOTES = {"staged": " (**staged**: this defect was written on purpose, then found)",
                 "check": " (found by the check in what the teacher wrote)"}
_NOTES = {"no_results": "no operator results", "reflection_request": "⚠ reflection requested",
          "summary_request": "summary request"}


def dialogue_markdown(view: dict[str, Any]) -> str:
    """The turns of `viewer.view.dialogue_view` as Markdown paragraphs and blockquotes."""
    parts: list[str] = []
    if view.get("layout_error"):
        parts.append(f"*Shown message by message: {md_text(view['layout_error'])}*")
    step = 0
    for turn in view["turns"]:
        kind = turn["kind"]
        if kind == "question":
            images = f" *({turn['images']} image{'s' if turn['images'] != 1 else ''} above)*" if turn.get("images") else ""
            parts.append(f"**User — question:**{images}<br>{md_text(turn['text'])}")
            if turn.get("cards"):
                parts.append("\n>\n".join(f"> **{md_text(c['operator'], 40)} output:** {md_text(c['text'])}"
                                       for c in turn["cards"]))
        elif kind == "step":
            step += 1
            mark = {"reflection": " — ⚠ asks for a reflection", "repaired": " — ✎ repaired step"}.get(turn.get("mark"), "")
            if turn.get("mark") == "reflection":
                mark += _ORIGIN_NOTES.get(turn.get("origin"), "")
            parts.append(f"**Assistant — step {step}{mark}**\n" + "\n>\n".join(_blocks(turn["blocks"])))
        elif kind == "results":
            parts.append("**User — operator results**\n" + "\n>\n".join(
                f"> **{md_text(c['operator'], 40)}:** {md_text(c['text'])}" for c in turn["cards"]))
        elif kind == "note":
            parts.append(f"**User — {_NOTES.get(turn['note'], turn['note'])}:** {md_text(turn['text'])}")
        elif kind == "answer":
            if turn.get("blocks"):
                parts.append("**Assistant**\n" + "\n>\n".join(_blocks(turn["blocks"])))
            verdict = {True: "✓ verified", False: "✗ does not match the reference"}.get(turn.get("verified"), "not checked")
            reference = "" if turn.get("reference") is None else f" · reference answer: **{md_text(turn['reference'])}**"
            parts.append(f"**Assistant — final answer:** **{md_text(turn.get('answer'))}**{reference} · {verdict}")
        else:
            parts.append(f"**{md_text(turn.get('role'), 20)}:** {md_text(turn.get('text'))}")
    return "\n\n".join(parts)


def example_dialogues(dataset_dir: Path, *, write_images: bool = False) -> list[dict[str, Any]]:
    """Per source: name, id, split, format, image (path in the folder, or None) and the dialogue's Markdown.

    `write_images` (what `write_card` does) writes `figures/examples/{source}.jpg` and removes example
    images of sources no longer present; otherwise an image is linked only when its file exists."""
    from viewer.images import downsized
    from viewer.view import dialogue_view

    root = Path(dataset_dir)
    folder = root / EXAMPLES_DIR
    examples = []
    for row, split in pick_examples(root):
        source = row["source"]
        image: Optional[str] = None
        rel = f"{EXAMPLES_DIR}/{_safe_name(source)}.jpg"
        if write_images and row.get("images"):
            folder.mkdir(parents=True, exist_ok=True)
            from generation.atomic import write_atomic

            write_atomic(root / rel, downsized(row["images"][0]["bytes"], IMAGE_SIDE))
        if row.get("images") and (root / rel).is_file():
            image = rel
        examples.append({"source": source, "id": md_text(row["id"], 200), "split": split, "format": row["format"],
                         "image": image, "markdown": dialogue_markdown(dialogue_view(row, split))})
    if write_images and folder.is_dir():
        keep = {Path(e["image"]).name for e in examples if e["image"]}
        for stale in folder.iterdir():
            if stale.is_file() and stale.name not in keep:
                stale.unlink()
    return examples


def _safe_name(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", source)
