"""The viewer shows quality (issue 32), in headless Chromium: each row's grounding (and evidence kind) and
its reflection's origin, in the list and on the dialogue, with filters for both; the filters and the
open dialogue live in the URL (a link opens the same view); at 420 px nothing scrolls sideways.
Every check compares the page with the parquet rows. Screenshots go to $MMAT_SCREENSHOT_DIR."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.browser import chromium, headless_browser, require_browser, screenshot_folder, served_view, wait_js
from tests.dataset_factory import make_dataset_folder
from tests.test_card_sections import restyle

pytestmark = pytest.mark.slow


def _quality(row: dict, i: int) -> None:
    """grounded yes / no / unrecorded by row, evidence kinds, every reflection staged in tabmwp, found by the
    check elsewhere."""
    row["meta"]["grounded"] = {0: True, 1: False, 2: True}.get(i % 4)
    row["meta"]["evidence"] = {0: "tool", 1: "none", 2: "source_rationale"}.get(i % 4)
    if row["reflection"]["kind"] != "none":
        row["reflection"]["origin"] = "staged" if row["source"] == "tabmwp" else "check"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = make_dataset_folder(tmp_path_factory.mktemp("quality"), n_rows_per_source=6, sources=["cauldron", "tabmwp"])
    restyle(folder, _quality)
    return folder


@pytest.fixture(scope="module")
def url(folder):
    yield from served_view([folder])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from headless_browser(tmp_path_factory)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return screenshot_folder(tmp_path_factory)


def rows(folder: Path) -> list[dict]:
    out = []
    for source in ("cauldron", "tabmwp"):
        for split in ("train", "validation"):
            for path in sorted((folder / "data/rr" / source).glob(f"{split}-*.parquet")):
                out += pq.read_table(path, columns=["id", "meta", "reflection"]).to_pylist()
    return out


def load(driver, address: str, what: str = "list") -> None:
    driver.get("about:blank")
    driver.get(address)
    wait_js(driver, "return document.body.dataset.ready" if what == "list" else "return document.body.dataset.detailVersion")
    if what == "list":
        wait_js(driver, "return document.body.dataset.facets")


def list_chips(driver) -> dict[str, list[str]]:
    return dict(driver.execute_script("""return [...document.querySelectorAll('#list li.item')]
        .map(li => [li.dataset.id, [...li.querySelectorAll('.chip')].map(c => c.textContent)]);"""))


def apply(driver, **values: str) -> None:
    version = driver.execute_script("return document.body.dataset.listVersion")
    driver.execute_script("""const form = document.getElementById('filter-form');
        for (const [name, value] of Object.entries(arguments[0])) {
          form.elements[name].value = value;
          if (form.elements[name].value !== value) throw new Error('no option ' + value + ' for ' + name);
        }
        document.getElementById('f-apply').click();""", values)
    wait_js(driver, "return document.body.dataset.listVersion !== arguments[0] && document.body.dataset.listVersion",
            60, version)


def listed(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#list li.item')].map(li => li.dataset.id)")


def expected_chips(row: dict) -> set[str]:
    meta, reflection = row["meta"], row["reflection"]
    kind = f" · {meta['evidence']}" if meta["evidence"] else ""
    chips = {{True: "grounded" + kind, False: "not grounded" + kind, None: "grounding not recorded"}[meta["grounded"]]}
    if reflection["kind"] != "none":
        chips.add(f"reflection: {reflection['kind']} · "
                  + {"staged": "staged", "check": "found by the check"}[reflection["origin"]])
    return chips


def test_the_list_shows_grounding_and_reflection_origin_of_every_row(browser, url, folder):
    load(browser, url)
    shown = list_chips(browser)
    parquet = rows(folder)
    assert list(shown) == [r["id"] for r in parquet]
    for row in parquet:
        assert expected_chips(row) <= set(shown[row["id"]]), (row["id"], shown[row["id"]])


@pytest.mark.parametrize("filters, keep", [
    ({"grounded": "no"}, lambda r: r["meta"]["grounded"] is False),
    ({"grounded": "unknown"}, lambda r: r["meta"]["grounded"] is None),
    ({"evidence": "source_rationale"}, lambda r: r["meta"]["evidence"] == "source_rationale"),
    ({"origin": "staged"}, lambda r: r["reflection"]["kind"] != "none" and r["reflection"]["origin"] == "staged"),
    ({"origin": "check", "grounded": "yes"}, lambda r: r["reflection"]["origin"] == "check" and r["meta"]["grounded"]),
])
def test_filters_on_grounding_and_origin_live_in_the_url(browser, url, folder, filters, keep):
    load(browser, url)
    apply(browser, **filters)
    want = [r["id"] for r in rows(folder) if keep(r)]
    assert want and listed(browser) == want
    shared = browser.current_url
    for name, value in filters.items():
        assert f"{name}={value}" in shared
    # the link, opened in a fresh page, shows the same list with the same form
    load(browser, shared)
    assert listed(browser) == want
    form = browser.execute_script("return Object.fromEntries([...new FormData(document.getElementById('filter-form'))])")
    assert {k: form.get(k) for k in filters} == filters
    # a dialogue opened from it keeps the filters in its URL; its link reopens it; "← list" goes back to them
    browser.execute_script("document.querySelector('#list li.item').click()")
    wait_js(browser, "return document.body.dataset.detailVersion")
    dialogue_url = browser.current_url
    assert dialogue_url.split("#", 1)[1].startswith(want[0]) and all(f"{k}={v}" in dialogue_url for k, v in filters.items())
    load(browser, dialogue_url, "detail")
    assert browser.execute_script("return document.getElementById('detail-id').textContent") == want[0]
    version = browser.execute_script("return document.body.dataset.listVersion || ''")
    browser.execute_script("document.querySelector('#detail-view a.back').click()")
    wait_js(browser, "return document.body.dataset.listVersion && document.body.dataset.listVersion !== arguments[0]"
            " && !document.getElementById('list-view').hidden", 60, version)
    assert listed(browser) == want


def test_a_dialogue_shows_grounding_evidence_and_a_staged_reflection(browser, url, folder):
    staged = next(r for r in rows(folder) if r["reflection"]["origin"] == "staged")
    load(browser, f"{url}#{staged['id']}", "detail")
    facts = browser.execute_script("return document.getElementById('fact-grounded').textContent")
    grounded = {True: "yes", False: "no", None: "not recorded"}[staged["meta"]["grounded"]]
    assert facts == "grounded" + grounded + (f" (evidence: {staged['meta']['evidence']})" if staged["meta"]["evidence"] else "")
    assert "staged: the defect was written on purpose" in browser.execute_script(
        "return document.getElementById('fact-origin').textContent")
    banners = browser.execute_script("return [...document.querySelectorAll('.turn.mark-reflection .banner')].map(b => b.textContent)")
    assert banners and all("staged: this defect was written on purpose" in b for b in banners)
    checked = next(r for r in rows(folder) if r["reflection"]["origin"] == "check")
    load(browser, f"{url}#{checked['id']}", "detail")
    banners = browser.execute_script("return [...document.querySelectorAll('.turn.mark-reflection .banner')].map(b => b.textContent)")
    assert banners and all("found by the check" in b and "staged" not in b for b in banners)


def test_at_420_px_nothing_scrolls_sideways(url, folder, screenshots, tmp_path):
    require_browser()
    narrow = chromium(tmp_path, width=420, height=900)
    # headless Chromium keeps a window at least 500 px wide: the viewport is set to 420 px as a phone's
    narrow.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    try:
        wide = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        load(narrow, url)
        assert narrow.execute_script("return window.innerWidth") == 420
        assert narrow.execute_script(wide) <= 0
        narrow.save_screenshot(str(screenshots / "viewer-420-list.png"))
        # the filters fold behind a button; opened, they fit the width
        assert narrow.execute_script("return getComputedStyle(document.getElementById('filters')).display") == "none"
        narrow.execute_script("document.getElementById('filters-toggle').click()")
        assert narrow.execute_script("return document.getElementById('filters').getBoundingClientRect().width") <= 420
        assert narrow.execute_script(wide) <= 0
        narrow.save_screenshot(str(screenshots / "viewer-420-filters.png"))
        long_row = rows(folder)[2]["id"]
        load(narrow, f"{url}#{long_row}", "detail")
        assert narrow.execute_script(wide) <= 0
        narrow.save_screenshot(str(screenshots / "viewer-420-dialogue.png"))
        version = narrow.execute_script("return document.body.dataset.detailVersion")
        narrow.execute_script("document.querySelector('#detail-switch button[data-formats=\"rr,orr\"]').click()")
        wait_js(narrow, "return document.body.dataset.detailVersion !== arguments[0]", 60, version)
        assert narrow.execute_script(wide) <= 0
    finally:
        narrow.quit()


def test_the_static_export_filters_on_grounding_and_origin(browser, folder, tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "mmat_cli", "view", str(folder), "--export", str(tmp_path / "x")],
                         cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    load(browser, (tmp_path / "x" / "index.html").as_uri() + "#?grounded=no&origin=check")
    want = [r["id"] for r in rows(folder) if r["meta"]["grounded"] is False and r["reflection"]["origin"] == "check"]
    assert want and listed(browser) == want
