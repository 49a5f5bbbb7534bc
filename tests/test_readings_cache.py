"""Shard readings kept in the work folder (`generation.readings_cache`): the audit and the card's
numbers are the same with the cache cold, warm, or absent; a kept reading is used only for the very
file it came from, under the same code; a torn or foreign entry is read again; no row text is kept.

The folder is hand-made (tests.test_quality_audit.hand_made: every failing kind, an exact duplicate,
near-duplicates, operator backends), three times over with other ids, each (format, source) group
split over several shard files so the merge crosses files: the examples' per-source cap, the
duplicate checks and the once-per-dialogue counts all span shards."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from generation.integration import build_rows
from mmat_1m import FEATURES, FORMATS, shard_dir, shard_name
from tests.test_quality_audit import MENU, SOUP, hand_made


def _made(spread: bool) -> list:
    """hand_made(); with `spread`, its ungrounded dialogue also under four other sources (more failing
    rows than the report keeps, from every source)."""
    made = hand_made()
    if spread:
        sample, trajectory, images = made[1]
        for prefix in ("llava_cot/llava_cot", "cauldron/ai2d", "tabmwp/tabmwp", "infoseek/infoseek"):
            source, subset = prefix.split("/")
            made.append((sample.model_copy(update={"id": f"{prefix}/ungrounded", "source": source, "subset": subset}),
                         trajectory, images))
    return made


def _folder(root: Path, spread: bool = False) -> Path:
    groups: dict[tuple[str, str], list[dict]] = {}
    for copy in range(3):
        for sample, trajectory, images in _made(spread):
            sample = sample.model_copy(update={"id": f"{sample.id}{copy}"})
            trajectory = trajectory.model_copy(update={"sample_id": sample.id})
            rows = build_rows(sample, trajectory, images)
            for fmt in FORMATS:
                groups.setdefault((fmt, sample.source), []).append(rows[fmt])
    for (fmt, source), rows in groups.items():
        out = root / shard_dir(fmt, source)
        out.mkdir(parents=True, exist_ok=True)
        files = 3
        for i in range(files):
            table = datasets.Dataset.from_list(rows[i::files], features=FEATURES).data.table
            pq.write_table(table, out / shard_name("train", i, files))
    return root


@pytest.fixture()
def folder(tmp_path):
    return _folder(tmp_path / "mmat-1m")


def _numbers(root: Path, cache=None) -> dict:
    """Everything the card shows that comes from reading rows: both audits and the card's stats."""
    from generation.quality.audit import audit_dataset
    from publishing.card_stats import collect_stats

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if hasattr(value, "__dataclass_fields__"):
            return plain(vars(value))
        return value

    return json.loads(json.dumps({"rr": audit_dataset(root, "rr", cache=cache).to_dict(),
                                  "orr": audit_dataset(root, "orr", cache=cache).to_dict(),
                                  "card": plain(vars(collect_stats(root, cache)))}, sort_keys=True))


def _no_shard_reads(monkeypatch):
    import generation.quality.shard_scan as audit  # where the audit's shard readers live
    import publishing.card_stats as card_stats

    def refuse(path):
        raise AssertionError(f"read {path} although its reading is kept")

    for module, name in ((audit, "audit_shard"), (audit, "shard_tokens"), (card_stats, "scan_shard")):
        monkeypatch.setattr(module, name, refuse)


def test_kept_readings_give_the_same_report_and_card_numbers_without_reading_a_shard(folder, tmp_path, monkeypatch):
    from generation.readings_cache import ReadingsCache

    expected = _numbers(folder)
    # 24 dialogues, 7 distinct texts with their images; the menu pair is near (another image each)
    assert expected["rr"]["exact_duplicates"] == 17 and expected["rr"]["near_duplicates"] == 1
    assert expected["card"]["dialogues"] == 24 and expected["card"]["operator_backends"] == {"image_caption": {"test": 9},
                                                                                              "ocr": {"test": 15}}
    assert {k: len(v) for k, v in expected["rr"]["examples"].items()} == {
        "exact_duplicate": 5, "leaked": 2, "near_duplicate": 1, "not_grounded": 2, "not_verified": 2}
    assert [e["id"] for e in expected["rr"]["examples"]["leaked"]] == ["tabmwp/tabmwp/leaked0", "tabmwp/tabmwp/leaked2"]
    cold = ReadingsCache(tmp_path / "readings", folder)
    assert _numbers(folder, cold) == expected
    assert cold.hits == 0 and cold.misses == 3 * 3 * 2 + 3 * 3 * 2 + 3 * 3 * 2  # audit rows/tokens per format, card

    _no_shard_reads(monkeypatch)
    warm = ReadingsCache(tmp_path / "readings", folder)
    assert _numbers(folder, warm) == expected
    assert warm.misses == 0 and warm.hits == cold.misses


def test_a_rewritten_shard_is_read_again(folder, tmp_path):
    from generation.readings_cache import ReadingsCache

    ReadingsCache(tmp_path / "readings", folder).prune()
    _numbers(folder, ReadingsCache(tmp_path / "readings", folder))
    shard = folder / shard_dir("rr", "visual_cot") / shard_name("train", 0, 3)
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 1), shard)  # same path, fewer rows: a new file
    cache = ReadingsCache(tmp_path / "readings", folder)
    assert _numbers(folder, cache) == _numbers(folder)
    assert cache.misses == 3  # that file's audit reading (as RR rows and as RR tokens) and its card numbers


def test_torn_or_foreign_entries_and_other_code_are_read_again(folder, tmp_path, monkeypatch):
    import numpy as np

    import generation.readings_cache as readings_cache
    from generation.readings_cache import ReadingsCache

    expected = _numbers(folder)
    _numbers(folder, ReadingsCache(tmp_path / "readings", folder))
    entries = sorted((tmp_path / "readings").glob("*.npz"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # torn
    entries[1].write_bytes(b"not an npz at all")
    np.savez(entries[2], __meta__=np.array([{"__key__": "x"}], dtype=object))  # needs pickle: never loaded
    cache = ReadingsCache(tmp_path / "readings", folder)
    assert _numbers(folder, cache) == expected
    assert cache.misses == 3
    again = ReadingsCache(tmp_path / "readings", folder)
    _numbers(folder, again)
    assert again.misses == 0  # rewritten whole

    monkeypatch.setattr(readings_cache, "code_digest", lambda: "other code")
    changed = ReadingsCache(tmp_path / "readings", folder)
    assert _numbers(folder, changed) == expected
    assert changed.hits == 0


def test_prune_keeps_only_what_the_last_reading_used_and_entries_hold_no_row_text(folder, tmp_path):
    from generation.readings_cache import ReadingsCache

    _numbers(folder, ReadingsCache(tmp_path / "readings", folder))
    blob = b"".join(p.read_bytes() for p in (tmp_path / "readings").iterdir())
    for text in (MENU[:40], SOUP[:40], "a white cup on a small saucer"):
        assert text.encode("utf-8") not in blob and text.encode("utf-32-le") not in blob, text
    assert b'"tabmwp/tabmwp/leaked0"' in blob  # ids are kept (the report's examples, the card's dialogue count)

    for fmt in FORMATS:
        (folder / shard_dir(fmt, "tabmwp") / shard_name("train", 2, 3)).unlink()
    (tmp_path / "readings" / ".tmp-reading-killed").write_bytes(b"half")
    before = len(list((tmp_path / "readings").iterdir()))
    cache = ReadingsCache(tmp_path / "readings", folder)
    _numbers(folder, cache)
    assert cache.prune() == 3 * 2 + 1  # the gone files' three readings in each format, and the temp file
    assert len(list((tmp_path / "readings").iterdir())) == before - 7 == len(cache.used)


def test_an_unwritable_cache_folder_costs_nothing_but_the_keeping(folder, tmp_path, caplog):
    from generation.readings_cache import ReadingsCache

    (tmp_path / "readings").write_text("a file where the folder should be")
    with caplog.at_level("WARNING", logger="mmat.readings"):
        assert _numbers(folder, ReadingsCache(tmp_path / "readings", folder)) == _numbers(folder)
    assert "could not keep the reading" in caplog.text


def test_examples_merged_from_shards_are_those_of_reading_every_row_in_order(tmp_path):
    """The per-shard examples (the first few per kind and source) merge into exactly the list that
    reading every row in shard order and keeping five per kind, two per source, gives (15 ungrounded
    rows from five sources, over 15 shards)."""
    from generation.quality.audit import EXAMPLES_PER_KIND, _failings, audit_dataset, row_quality
    from viewer.store import ShardStore

    folder = _folder(tmp_path / "mmat-1m", spread=True)
    expected: dict[str, list[str]] = {}
    for shard in ShardStore.from_folder(folder).shards_of("rr"):
        for row in pq.read_table(shard.path).to_pylist():
            q = row_quality(row)
            for kind, _ in _failings(q):
                kept = expected.setdefault(kind, [])
                if len(kept) < EXAMPLES_PER_KIND and sum(i.split("/")[0] == q.source for i in kept) < 2:
                    kept.append(q.id)
    report = audit_dataset(folder, "rr")
    got = {k: [e["id"] for e in v] for k, v in report.examples.items() if v and k in expected}
    assert got == expected and len(expected["not_grounded"]) == EXAMPLES_PER_KIND
    assert len({i.split("/")[0] for i in expected["not_grounded"]}) == 3


def test_the_reading_process_reads_what_it_is_handed_and_reports_a_failure(folder, tmp_path, caplog):
    """`ReadAhead` (the process the rolling thread hands its parts to): a file it cannot read costs that
    file only, and closing it says so in one warning (the end of the run reads that file itself)."""
    from generation.readings_cache import CACHE_DIRNAME, ReadAhead

    reader = ReadAhead(tmp_path / "work", folder)
    reader.add([folder / "data" / "rr" / "missing.parquet", folder / shard_dir("rr", "visual_cot") / shard_name("train", 0, 3)], "rr")
    reader.add([folder / shard_dir("orr", "visual_cot") / shard_name("train", 0, 3)], "orr")
    with caplog.at_level("WARNING", logger="mmat.readings"):
        reader.close()
    assert "reading parts ahead stopped (exit code 1)" in caplog.text
    kept = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "work" / CACHE_DIRNAME).glob("*.npz"))
    assert kept == ["audit-rows", "audit-rows", "audit-tokens", "audit-tokens", "card", "card"]  # rows and tokens each
