"""`mmat view` in a real browser (headless Chromium): the demo dataset the engine generated, a copy of
its TabMWP rows with hostile text, and the static export opened from `file://`. Every check reads the
DOM and compares it with the parquet rows.

Screenshots of the list and of one dialogue go to $MMAT_SCREENSHOT_DIR (default: the test's tmp folder).
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mmat_1m import SOURCES, SPLITS
from generation.dialogue_format import START_SUFFIX
from tests.browser import headless_browser, screenshot_folder, served_view, start_view, wait_js

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from headless_browser(tmp_path_factory)


@pytest.fixture(scope="module")
def demo_folder(demo) -> Path:
    return demo["root"] / "mmat-1m"


@pytest.fixture(scope="module")
def demo_url(demo_folder):
    yield from served_view([demo_folder])


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return screenshot_folder(tmp_path_factory)


def parquet_rows(folder: Path, fmt: str, columns=None) -> list[dict]:
    """Every row of a format in the list's order: sources in SOURCES order, then split, then file."""
    rows = []
    for source in SOURCES:
        for split in SPLITS:
            for path in sorted((folder / "data" / fmt / source).glob(f"{split}-*.parquet")):
                rows.extend({**r, "split": split} for r in pq.read_table(path, columns=columns).to_pylist())
    return rows


# ------------------------------------------------------------------------------------ page helpers
def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_js(driver, "return document.body.dataset.ready")


def apply_filters(driver, **values: str) -> None:
    """Set the filter form (select by value, inputs by text, `quarantined` by checkbox) and apply it."""
    version = driver.execute_script("return document.body.dataset.listVersion")
    driver.execute_script("""
        const form = document.getElementById('filter-form');
        for (const field of form.elements) {
          if (field.type === 'checkbox') field.checked = false; else if (field.name) field.value = '';
        }
        for (const [name, value] of Object.entries(arguments[0])) {
          const field = form.elements[name];
          if (field.type === 'checkbox') field.checked = Boolean(value); else field.value = value;
          if (field.value !== value && field.type !== 'checkbox') throw new Error('no option ' + value + ' for ' + name);
        }""", values)
    driver.execute_script("document.getElementById('f-apply').click()")
    wait_js(driver, "return document.body.dataset.listVersion !== arguments[0] && document.body.dataset.listVersion",
            60, version)


def all_list_ids(driver) -> list[str]:
    """Every id the list shows, page after page."""
    ids = []
    while True:
        ids += driver.execute_script("return [...document.querySelectorAll('#list li.item')].map(li => li.dataset.id)")
        if driver.execute_script("return document.getElementById('next').disabled"):
            return ids
        version = driver.execute_script("return document.body.dataset.listVersion")
        driver.execute_script("document.getElementById('next').click()")
        wait_js(driver, "return document.body.dataset.listVersion !== arguments[0]", 60, version)


def open_dialogue(driver, base_url: str, sample_id: str) -> None:
    """Load the dialogue's permalink (`#id`) in a fresh page."""
    driver.get("about:blank")
    driver.get(base_url + "#" + sample_id)
    wait_js(driver, "return document.body.dataset.detailVersion")


def texts(driver, selector: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(n => n.textContent)")


def loaded_image_widths(driver, selector: str) -> list[int]:
    wait_js(driver, f"return [...document.querySelectorAll({selector!r})].every(i => i.complete)")
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(i => i.naturalWidth)")


def message_text(message: dict) -> str:
    return "".join(b["text"] or "" for b in message["content"] if b["type"] == "text")


# ------------------------------------------------------------------------------------ the demo
def test_the_list_shows_every_dialogue(browser, demo_url, demo_folder, screenshots):
    open_page(browser, demo_url)
    rows = parquet_rows(demo_folder, "rr", ["id"])
    assert wait_js(browser, "return document.getElementById('count').dataset.total") == str(len(rows))
    assert all_list_ids(browser) == [r["id"] for r in rows]
    open_page(browser, demo_url)
    wait_js(browser, "return document.getElementById('count').dataset.total")
    assert all(w > 0 for w in loaded_image_widths(browser, "#list li.item img")[:8])
    browser.save_screenshot(str(screenshots / "viewer-list.png"))


def test_a_filter_shows_exactly_the_matching_ids(browser, demo_url, demo_folder):
    open_page(browser, demo_url)
    apply_filters(browser, source="tabmwp", reflection="math")
    expected = [r["id"] for r in parquet_rows(demo_folder, "rr", ["id", "source", "reflection"])
                if r["source"] == "tabmwp" and r["reflection"]["kind"] == "math"]
    assert expected and all_list_ids(browser) == expected
    # the rarest operator among the validation rows (the offline teacher calls each where its evidence helps,
    # so which one is rare depends on the demo): the filter must leave out most rows
    validation = [r for r in parquet_rows(demo_folder, "rr", ["id", "steps"]) if r["split"] == "validation"]
    used = Counter(op for r in validation for op in {o for s in r["steps"] for o in s["operators"]})
    operator = min(used, key=lambda op: (used[op], op))
    apply_filters(browser, operator=operator, split="validation")
    expected = [r["id"] for r in validation if any(operator in s["operators"] for s in r["steps"])]
    assert expected and len(expected) < len(validation) and all_list_ids(browser) == expected


def _showcase(folder: Path) -> dict:
    """A TabMWP row with operator results and a math reflection (the demo has them)."""
    return next(r for r in parquet_rows(folder, "rr") if r["source"] == "tabmwp" and r["reflection"]["kind"] == "math"
                and any(s["observations"] for s in r["steps"]))


def test_a_dialogue_shows_its_rows_turns_operator_cards_and_images(browser, demo_url, demo_folder, screenshots):
    row = _showcase(demo_folder)
    open_dialogue(browser, demo_url, row["id"])
    column = "#detail-view .column[data-format=rr] "
    steps = row["steps"]
    assert texts(browser, column + ".turn[data-kind=step] .block-THOUGHT .body") == [s["thought"] for s in steps]
    assert texts(browser, column + ".turn[data-kind=step] .block-SIGNAL .body") == [s["signal"] for s in steps]
    cards = browser.execute_script(f"""return [...document.querySelectorAll({column + '.op-card'!r})].map(c =>
        [c.dataset.operator, c.querySelector('.op-text').textContent, c.querySelector('.op-backend').textContent])""")
    observations = [(o["operator"], o["text"]) for s in steps for o in s["observations"]]
    assert [(c[0], c[1]) for c in cards] == observations
    # the demo's work folder holds the operator cache: every card names its backend
    assert all(c[2].startswith("backend: ") for c in cards), cards
    # ... the one the row itself records (PaddleOCR where installed, rapidocr otherwise)
    assert [c[2] for c in cards] == [f"backend: {o['backend']}" for s in steps for o in s["observations"]]
    assert {c[2] for c in cards if c[0] == "ocr"} <= {"backend: paddle", "backend: rapidocr"}
    kinds = browser.execute_script(f"return [...document.querySelectorAll({column + '.turn'!r})].map(t => t.dataset.kind)")
    assistant_turns = [m for m in row["messages"] if m["role"] == "assistant"]
    assert kinds.count("step") + kinds.count("answer") == len(assistant_turns)
    assert len(kinds) == len(row["messages"]) - 1  # every turn but the system prompt (folded above)
    reflection = [s["signal"] for s in steps].index("reflection")
    marked = browser.execute_script(f"""return [...document.querySelectorAll({column + '.turn[data-kind=step]'!r})]
        .map(t => t.classList.contains('mark-reflection') ? 'reflection' : t.classList.contains('mark-repaired') ? 'repaired' : '')""")
    assert marked[reflection] == "reflection" and marked[reflection + 1] == "repaired"
    assert texts(browser, column + ".final-answer") == [message_text(assistant_turns[-1])]
    assert texts(browser, column + ".reference-answer") == [row["answer"]]
    assert "verified" in texts(browser, column + ".verdict")[0]
    assert row["teacher"]["model"] in browser.find_element("css selector", ".facts").text
    widths = loaded_image_widths(browser, "#detail-images img")
    assert len(widths) == len(row["images"]) and all(w > 0 for w in widths)
    browser.save_screenshot(str(screenshots / "viewer-dialogue-top.png"))
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(height + 120, 6000))
    browser.save_screenshot(str(screenshots / "viewer-dialogue.png"))
    browser.set_window_size(1400, 1000)
    browser.execute_script("document.querySelector('#detail-images img').click()")
    assert loaded_image_widths(browser, "#lightbox-img")[0] > 0
    assert browser.execute_script("return !document.getElementById('lightbox').hidden")


def test_rr_and_orr_side_by_side(browser, demo_url, demo_folder):
    row = _showcase(demo_folder)
    orr = next(r for r in parquet_rows(demo_folder, "orr") if r["id"] == row["id"])
    open_dialogue(browser, demo_url, row["id"])
    version = browser.execute_script("return document.body.dataset.detailVersion")
    browser.execute_script("document.querySelector('#detail-switch button[data-formats=\"rr,orr\"]').click()")
    wait_js(browser, "return document.body.dataset.detailVersion !== arguments[0]", 60, version)
    assert texts(browser, "#detail-view .column h3") == ["RR", "ORR"]
    orr_col = "#detail-view .column[data-format=orr] "
    # what the ORR row's own answer turns say (the engine may word the one-turn thought apart from the steps)
    thoughts = [re.search(r"<THOUGHT>(.*?)</THOUGHT>", message_text(m), re.S).group(1)
                for m in orr["messages"] if m["role"] == "assistant"]
    assert texts(browser, orr_col + ".block-THOUGHT .body") == thoughts
    api = list(dict.fromkeys((o["operator"], o["text"]) for s in orr["steps"] for o in s["observations"]
                             if o["operator"] != "rag"))
    assert [tuple(c) for c in browser.execute_script(f"""return [...document.querySelectorAll({orr_col + '.op-card'!r})]
        .map(c => [c.dataset.operator, c.querySelector('.op-text').textContent])""")] == api
    assert browser.current_url.endswith("#" + row["id"])  # the permalink


# ------------------------------------------------------------------------------------ hostile rows
HOSTILE_QUESTION = ('What is <script>window.__pwned = 1</script> the mean? </THOUGHT><SIGNAL>end</SIGNAL> '
                    '<img src=x onerror="window.__pwned = 2">')
HOSTILE_THOUGHT = "</THOUGHT><script>window.__pwned = 3</script> I read the table."
HOSTILE_RESULT = "<b>bold</b></pre><script>window.__pwned = 4</script>"
HOSTILE_ANSWER = "<i>50</i>"
HOSTILE_REASON = "cannot identify image file <script>window.__pwned = 5</script>"


def _poison(row: dict, question: str, thought: str, result: str) -> dict:
    """The row with hostile text in its question, first thought, first result and answer; its messages say the
    same (each text replaced where the layout put it), so the dialogue still lines up with its steps."""
    row = copy.deepcopy(row)
    swaps = [(row["question"], HOSTILE_QUESTION), (thought, HOSTILE_THOUGHT), (result, HOSTILE_RESULT)]
    for message in row["messages"]:
        for block in message["content"]:
            for old, new in swaps:
                if block["text"]:
                    block["text"] = block["text"].replace(old, new)
        if message["role"] == "assistant" and message is row["messages"][-1] and row["format"] == "rr":
            message["content"][0]["text"] = HOSTILE_ANSWER
    row["question"] = HOSTILE_QUESTION
    row["steps"][0]["thought"] = HOSTILE_THOUGHT
    row["steps"][0]["observations"][0]["text"] = HOSTILE_RESULT
    row["answer"] = HOSTILE_ANSWER
    return row


@pytest.fixture(scope="module")
def hostile(demo_folder, tmp_path_factory):
    """The demo's TabMWP rows, one of them hostile, written by the engine's shard writer; its work folder
    holds a quarantine record with a hostile reason."""
    from generation.checkpoint import Checkpoint, QuarantineRecord
    from generation.plan import default_work_dir
    from generation.writer import write_group

    folder = tmp_path_factory.mktemp("hostile") / "mmat-1m"
    target = _showcase(demo_folder)
    first = target["steps"][0]
    for fmt in ("rr", "orr"):
        for split in ("train", "validation"):
            rows = [r for r in parquet_rows(demo_folder, fmt) if r["source"] == "tabmwp" and r["split"] == split]
            rows = [_poison(r, r["question"], first["thought"], first["observations"][0]["text"])
                    if r["id"] == target["id"] else r for r in rows]
            write_group(folder, fmt, "tabmwp", split, [{k: v for k, v in r.items() if k != "split"} for r in rows])
    with Checkpoint(default_work_dir(folder)) as checkpoint:
        checkpoint.quarantine(QuarantineRecord("tabmwp/free_text/999", "foundation", "ImageDecodeError",
                                               HOSTILE_REASON, "tabmwp"))
    proc, url = start_view([folder])
    yield {"folder": folder, "url": url, "id": target["id"]}
    proc.terminate()
    proc.wait(timeout=30)


def _assert_hostile_text_shown_as_text(driver, base_url: str, sample_id: str) -> None:
    open_page(driver, base_url)
    apply_filters(driver, text="window.__pwned")
    assert all_list_ids(driver) == [sample_id]
    assert texts(driver, "#list li.item .item-question") == [HOSTILE_QUESTION]
    open_dialogue(driver, base_url, sample_id)
    rr = "#detail-view .column[data-format=rr] "
    # the question turn as written: the paper's RR asks the question, then "Please start your reasoning."
    assert texts(driver, rr + ".turn[data-kind=question] .text")[0] == HOSTILE_QUESTION + START_SUFFIX
    assert texts(driver, rr + ".block-THOUGHT .body")[0] == HOSTILE_THOUGHT
    assert texts(driver, rr + ".op-card .op-text")[0] == HOSTILE_RESULT
    assert texts(driver, rr + ".reference-answer") == [HOSTILE_ANSWER]
    assert texts(driver, rr + ".final-answer") == [HOSTILE_ANSWER]
    # nothing from the rows became markup or ran
    assert driver.execute_script("return document.querySelectorAll('#detail-view b, #detail-view i, "
                                 "#detail-view script, #list img[src=x], #detail-view img[src=x]').length") == 0
    assert driver.execute_script("return window.__pwned") is None


def test_hostile_text_is_shown_as_text(browser, hostile):
    _assert_hostile_text_shown_as_text(browser, hostile["url"], hostile["id"])
    assert browser.execute_script("return document.scripts.length") == 1  # app.js only


def test_quarantined_samples_are_listed_with_their_reason(browser, hostile):
    open_page(browser, hostile["url"])
    wait_js(browser, "return document.body.dataset.facets")
    assert texts(browser, "#quarantined-count") == ["(1)"]
    apply_filters(browser, quarantined="1")
    assert all_list_ids(browser) == ["tabmwp/free_text/999"]
    assert texts(browser, "#list .reason") == [HOSTILE_REASON]
    assert "stage: foundation" in texts(browser, "#list .chip")
    assert browser.execute_script("return window.__pwned") is None


# ------------------------------------------------------------------------------------ static export
def _export(dataset: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "mmat_cli", "view", str(dataset), "--export", str(out), *extra],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported" in result.stdout


def test_the_static_export_works_from_file(browser, demo_folder, tmp_path):
    out = tmp_path / "share"
    _export(demo_folder, out, "--limit", "30")
    url = (out / "index.html").as_uri()
    open_page(browser, url)
    exported = all_list_ids(browser)
    rows = {r["id"]: r for r in parquet_rows(demo_folder, "rr", ["id", "source", "reflection"])}
    assert len(exported) == 30 and set(exported) <= set(rows)
    assert {rows[i]["source"] for i in exported} == {r["source"] for r in rows.values()}  # every source is sampled
    apply_filters(browser, source="tabmwp", reflection="math")
    expected = [i for i in exported if rows[i]["source"] == "tabmwp" and rows[i]["reflection"]["kind"] == "math"]
    assert expected and all_list_ids(browser) == expected
    row = next(r for r in parquet_rows(demo_folder, "rr") if r["id"] == expected[0])
    open_dialogue(browser, url, row["id"])
    assert texts(browser, "#detail-view .column[data-format=rr] .block-THOUGHT .body") == [s["thought"] for s in row["steps"]]
    widths = loaded_image_widths(browser, "#detail-images img")
    assert len(widths) == len(row["images"]) and all(w > 0 for w in widths)
    version = browser.execute_script("return document.body.dataset.detailVersion")
    browser.execute_script("document.querySelector('#detail-switch button[data-formats=\"orr\"]').click()")
    wait_js(browser, "return document.body.dataset.detailVersion !== arguments[0]", 60, version)
    assert texts(browser, "#detail-view .column h3") == ["ORR"]
    assert not list(out.rglob("*.parquet"))  # images are downsized copies; no shard travels


def test_the_static_export_shows_hostile_text_as_text(browser, hostile, tmp_path):
    out = tmp_path / "share"
    _export(hostile["folder"], out)
    _assert_hostile_text_shown_as_text(browser, (out / "index.html").as_uri(), hostile["id"])
