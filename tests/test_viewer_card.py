"""The dataset card shows one example dialogue per source, with its image, and says how to open the viewer;
row text in it is inert (rendered by markdown-it, the CommonMark renderer rich uses, with HTML on as on the Hub)."""
from __future__ import annotations

import copy
import html
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmat_1m import SOURCES
from publishing.card import SOURCE_LICENSES, write_card
from publishing.examples import EXAMPLES_DIR, IMAGE_SIDE
from publishing.push import published_files
from tests.dataset_factory import make_dataset_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_dataset_folder(tmp_path_factory.mktemp("card-examples"), n_rows_per_source=6, card=True)


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start: end if end > 0 else None]


def _html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_one_example_dialogue_per_source_with_its_image(folder):
    card = (folder / "README.md").read_text()
    examples = _section(card, "Example dialogues")
    headings = [line for line in examples.splitlines() if line.startswith("### ")]
    assert [h.split(":")[0][4:] for h in headings] == [SOURCE_LICENSES[s].name for s in SOURCES]
    for source in SOURCES:
        image = folder / EXAMPLES_DIR / f"{source}.jpg"
        with Image.open(image) as img:
            assert img.format == "JPEG" and max(img.size) <= IMAGE_SIDE
        assert f'<img src="{EXAMPLES_DIR}/{source}.jpg"' in examples
        assert f"{EXAMPLES_DIR}/{source}.jpg" in published_files(folder)  # `mmat push` uploads it with the card
    # tabmwp's first row group holds a math reflection with OCR results (row 2): that one is the example
    tabmwp = examples[examples.index("### TabMWP"):]
    tabmwp = tabmwp[:tabmwp.find("\n### ") if "\n### " in tabmwp else None]
    assert "### TabMWP: tabmwp/tabmwp/train-000002" in tabmwp
    for label in ("**THOUGHT**", "**OPERATOR** ocr", "**SIGNAL** continue", "asks for a reflection",
                  "repaired step", "reflection requested", "**ocr:** ocr output 2.0",
                  "**Assistant — final answer:** **answer2-0** · reference answer: **answer2-0** · ✓ verified"):
        assert label in tabmwp, label


def test_the_card_says_how_to_open_the_viewer(folder, tmp_path):
    card = (folder / "README.md").read_text()
    assert "mmat view path/to/mmat-1m --config rr" in _section(card, "Browse the dialogues")
    released = make_dataset_folder(tmp_path, n_rows_per_source=2)
    write_card(released, version="1.2.0", repo_id="team/mmat-1m")
    text = (released / "README.md").read_text()
    assert "mmat view team/mmat-1m --revision v1.2.0 --config rr" in text
    assert "--export viewer-sample" in text


def test_row_text_in_the_examples_is_shown_as_text(tmp_path):
    from generation.writer import write_group

    folder = make_dataset_folder(tmp_path, n_rows_per_source=3, sources=["tabmwp"])
    hostile = "Is <script>alert(1)</script> **bold** [link](http://x) ![img](http://x/y.png) `code` | a </THOUGHT> ok?"
    for fmt in ("rr", "orr"):
        path = folder / f"data/{fmt}/tabmwp/train-00000-of-00001.parquet"
        rows = pq.read_table(path).to_pylist()
        rows = [copy.deepcopy(r) for r in rows]
        for row in rows:
            row["question"] = hostile
            for message in row["messages"]:
                for block in message["content"]:
                    if block["text"]:
                        block["text"] = block["text"].replace("What is shown", hostile)
            row["steps"][0]["observations"][0]["text"] = "<img src=x onerror=alert(2)>"
        write_group(folder, fmt, "tabmwp", "train", rows)
    write_card(folder)
    examples = _section((folder / "README.md").read_text(), "Example dialogues")
    rendered = _html(examples)
    assert "<script" not in rendered and "<strong>bold" not in rendered and "<a href" not in rendered
    assert "<img src=x" not in rendered and 'src="http://x/y.png"' not in rendered and "<code>code" not in rendered
    text = html.unescape(rendered)
    assert "<script>alert(1)</script> **bold** [link](http://x)" in text
    assert "<img src=x onerror=alert(2)>" in text


def test_example_images_of_sources_no_longer_present_are_removed(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=2, sources=["tabmwp", "infoseek"], card=True)
    assert sorted(p.name for p in (folder / EXAMPLES_DIR).iterdir()) == ["infoseek.jpg", "tabmwp.jpg"]
    for path in (folder / "data").rglob("*/infoseek/*.parquet"):
        path.unlink()
    write_card(folder)
    assert sorted(p.name for p in (folder / EXAMPLES_DIR).iterdir()) == ["tabmwp.jpg"]
    assert "### InfoSeek" not in (folder / "README.md").read_text()
