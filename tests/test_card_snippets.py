"""The pushed card's own words, run: every ```python block of the card on the (test) Hub is executed
against that Hub, for a dataset with every config and for one that lacks most (no ORR, two sources).
A snippet naming a config the version does not have ("BuilderConfig 'rr-tabmwp' not found") fails here.

Also: the card a push uploads keeps the run's facts (Generation run, quarantine count) that the run
kept beside the data, and `mmat card --write` renders the run's card again, byte for byte.
"""
from __future__ import annotations

import re

import pytest

from publishing.card import write_card
from publishing.card_sections import RUN_FACTS_FILENAME
from publishing.push import published_files, push_dataset, show_card
from tests.dataset_factory import make_dataset_folder

REPO_ID = "tester/mmat-1m"
RUN = {"quarantined_total": 3, "quarantine_by_stage": {"foundation": 1, "rationale": 2}, "generation_elapsed_s": 4.5}


def python_snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def _run_snippets(hub_client, card: str) -> list[str]:
    """Each snippet in a fresh interpreter against the test Hub; their printed lines."""
    snippets = python_snippets(card)
    assert snippets, "the card has no python snippet"
    printed = []
    for code in snippets:
        proc = hub_client(code + "\nimport json; print(json.dumps('ok'))\n", timeout=300, check=False)
        assert proc.returncode == 0, f"snippet failed:\n{code}\n{proc.stderr[-3000:]}"
        printed += proc.stdout.splitlines()
    return printed


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["full", "partial"])
def test_every_snippet_of_the_pushed_card_runs(layout, hub_server, hub_client, tmp_path):
    if layout == "full":
        folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2)
    else:  # no ORR rows and no TabMWP: `orr` and `rr-tabmwp` must not appear in the snippets
        folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["infoseek", "cauldron"],
                                     formats=["rr"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    card = show_card(REPO_ID, revision="v1.0.0")
    snippet = "".join(python_snippets(card))
    assert 'revision="v1.0.0"' in snippet
    if layout == "partial":
        assert '"orr"' not in snippet and "tabmwp" not in snippet
        assert '"rr"' in snippet and '"rr-cauldron"' in snippet
    printed = _run_snippets(hub_client, card)
    assert any(re.match(r"(infoseek|cauldron|visual_cot)/", line) for line in printed), printed  # a streamed row's id
    train_rows = 10 if layout == "full" else 4  # 5 sources (or 2) x 2 train rows
    assert any(f"num_rows: {train_rows}" in line for line in printed), printed  # the whole config, loaded


@pytest.mark.slow
def test_push_keeps_the_runs_facts_and_a_rerender_is_the_same_card(hub_server, tmp_path):
    from generation.quality.audit import REPAIR_REJECTED, audit_run

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp"])
    report = audit_run(folder)
    report.quarantined = {f"reflection/{REPAIR_REJECTED}": 2, "foundation/ValueError": 1}
    write_card(folder, run_stats=RUN, quality_report=report)  # what the run's end does
    run_card = (folder / "README.md").read_text()
    assert "**2** rejected" in run_card  # the Quality section's count from the run's quarantine
    assert "**3 (foundation 1, rationale 2)**" in run_card and "## Generation run" in run_card
    assert RUN_FACTS_FILENAME not in published_files(folder)
    # `mmat card --write`: the same card, byte for byte
    write_card(folder)
    assert (folder / "README.md").read_text() == run_card
    # `mmat push`: the pushed card (and the local one) keep the run's section and quarantine count
    push_dataset(folder, REPO_ID, "v1.0.0")
    pushed = show_card(REPO_ID, revision="v1.0.0")
    assert pushed == (folder / "README.md").read_text()
    for text in (pushed,):
        assert "## Generation run" in text and "**3 (foundation 1, rationale 2)**" in text
        assert "the card was written without a generation run" not in text
    # apart from its version and changelog, the pushed card is the run's card
    body = lambda t: re.sub(r"(?s)^---.*?---\n|\*\*Version.*?\n|\*\*Unreleased.*?\n|## Changelog.*?## Citation|, revision=\"v1.0.0\"|--revision v1.0.0 |tester/mmat-1m|path/to/mmat-1m", "", t)
    assert body(pushed) == body(run_card)
