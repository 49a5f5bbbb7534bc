"""The dataset card: YAML the Hub and `datasets` read, stats that match the shards, versions that accumulate."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmat_1m import CONFIGS, DEFAULT_CONFIG, FEATURES, SOURCES
from publishing.card import FIGURE_PATH, render_card_terminal, write_card
from publishing.card_stats import collect_stats
from publishing.changelog import read_card_metadata, split_front_matter
from tests.dataset_factory import make_dataset_folder, make_dialogue


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_dataset_folder(tmp_path_factory.mktemp("card"), n_rows_per_source=4, card=True)


def _body_table(text: str, header: str) -> list[list[str]]:
    """Rows (cells) of the Markdown table whose header line starts with `| header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_card_round_trips_through_huggingface_hub_dataset_card(folder):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other"
    assert data["source_licenses"]["tabmwp"] == "cc-by-nc-sa-4.0"
    assert set(data["source_licenses"]) == set(SOURCES)
    assert "image-text-to-text" in data["task_categories"]
    assert data["size_categories"] == ["n<1K"]
    assert data["pretty_name"]
    assert {c["config_name"] for c in data["configs"]} == {c.name for c in CONFIGS}
    assert "# MMAT-1M" in card.text
    # Saving and reloading keeps the metadata (the Hub and `datasets` both rewrite cards this way).
    again = DatasetCard(card.content)
    assert again.data.to_dict() == data


def test_card_metadata_by_the_libraries_has_provenance_and_per_source_license_links(folder):
    """The fields issue 16 asks for, read back by `huggingface_hub.DatasetCard.load`, and the configs read
    back by `datasets`' own MetadataConfigs (what `load_dataset` uses to find the data files)."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    from publishing.card import SOURCE_LICENSES

    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["annotations_creators"] == ["machine-generated"]
    assert data["language_creators"] == ["found", "machine-generated"]
    assert data["source_datasets"] == [f"extended|{SOURCE_LICENSES[s].upstream}" for s in SOURCES]
    assert data["license_name"] == "mixed-per-source" and data["license_link"] == "LICENSE.md"
    links = data["source_license_links"]
    assert set(links) == set(SOURCES) and all(link.startswith("https://") for link in links.values())
    assert links["tabmwp"] == "https://github.com/lupantech/PromptPG#license"
    license_md = (folder / "LICENSE.md").read_text()
    assert all(link in license_md for link in links.values())
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert set(configs) == {c.name for c in CONFIGS}
    assert configs["orr-tabmwp"]["data_files"] == [{"split": "train", "path": "data/orr/tabmwp/train-*.parquet"},
                                                  {"split": "validation", "path": "data/orr/tabmwp/validation-*.parquet"}]
    assert configs["orr"].get("default") is True


def test_dataset_info_declares_exact_split_sizes_and_leaves_features_to_the_shards(folder, tmp_path):
    """The YAML keeps what `datasets` reads (split sizes per config); the features, 90% of the old YAML
    (1,226 lines for 12 configs), are read from the shards' own schema: loading still gives FEATURES."""
    import datasets
    import pyarrow.parquet as pq
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(folder / "README.md").data)
    assert set(infos) == {c.name for c in CONFIGS}
    assert all(info.features is None for info in infos.values())
    front = (folder / "README.md").read_text().split("---\n")[1]
    assert len(front.splitlines()) < 300, len(front.splitlines())
    shard = next(folder.glob("data/orr/*/*.parquet"))
    assert datasets.Features.from_arrow_schema(pq.read_schema(shard)) == FEATURES
    loaded = datasets.load_dataset(str(folder), "orr-infoseek", split="train", cache_dir=str(tmp_path))
    assert loaded.features == FEATURES
    # 5 sources x 4 train / 1 validation dialogues.
    assert infos["orr"].splits["train"].num_examples == 20
    assert infos["orr"].splits["validation"].num_examples == 5
    assert infos["rr-tabmwp"].splits["train"].num_examples == 4
    assert infos["rr-tabmwp"].splits["validation"].num_examples == 1
    assert "&id" not in (folder / "README.md").read_text()  # no YAML anchors


def test_local_folder_loads_every_config_with_both_splits(folder, tmp_path):
    import datasets

    names = datasets.get_dataset_config_names(str(folder))
    # in the order `datasets` writes them itself (MetadataConfigs: by name); `orr`, the default, first
    assert names == sorted(c.name for c in CONFIGS) and names[0] == DEFAULT_CONFIG
    orr = datasets.load_dataset(str(folder), "orr", cache_dir=str(tmp_path))
    assert {k: v.num_rows for k, v in orr.items()} == {"train": 20, "validation": 5}
    assert orr["train"].features == FEATURES
    rr = datasets.load_dataset(str(folder), "rr-tabmwp", cache_dir=str(tmp_path))
    assert {k: v.num_rows for k, v in rr.items()} == {"train": 4, "validation": 1}
    row = rr["train"][0]
    assert row["format"] == "rr" and row["source"] == "tabmwp"
    first_user = next(m for m in row["messages"] if m["role"] == "user")
    assert [b["type"] for b in first_user["content"]].count("image") == len(row["images"])
    assert all(isinstance(m["content"], list) for m in row["messages"])


def test_wrong_split_sizes_in_the_card_make_loading_fail(folder, tmp_path):
    """`datasets` checks the card's split sizes: a stale card is an error, so the counts matter."""
    import shutil

    import datasets

    copy = tmp_path / "mmat-1m"
    shutil.copytree(folder, copy)
    readme = copy / "README.md"
    text = readme.read_text()
    text = text.replace("num_examples: 20", "num_examples: 21", 1)
    readme.write_text(text)
    with pytest.raises(Exception, match="(?i)split"):
        datasets.load_dataset(str(copy), "orr", cache_dir=str(tmp_path / "cache"))


def test_stats_match_the_rows(folder):
    stats = collect_stats(folder)
    rows = [make_dialogue(s, split, i) for s in SOURCES for split, n in (("train", 4), ("validation", 1)) for i in range(n)]
    assert stats.dialogues == len(rows) == 25
    for fmt in ("rr", "orr"):
        fs = stats.formats[fmt]
        assert fs.rows == 25
        turns = sum(sum(m["role"] == "assistant" for m in r[fmt]["messages"]) for r in rows)
        assert fs.turns == turns
        tokens = sum(len(re.findall(r"[0-9A-Za-z_]+|[^0-9A-Za-z_\s]", b["text"] or ""))
                     for r in rows for m in r[fmt]["messages"] for b in m["content"])
        assert fs.tokens == tokens
        ops = {}
        for r in rows:
            for step in r[fmt]["steps"]:
                for op in step["operators"]:
                    ops[op] = ops.get(op, 0) + 1
                if step["rag_query"]:
                    ops["rag"] = ops.get("rag", 0) + 1
        assert dict(fs.operator_calls) == ops
        kinds = {}
        for r in rows:
            kinds[r[fmt]["reflection"]["kind"]] = kinds.get(r[fmt]["reflection"]["kind"], 0) + 1
        assert dict(fs.reflections) == kinds
    # Backends per operator are counted once per dialogue, from each observation's `backend`.
    backends = {}
    for r in rows:
        for step in r["rr"]["steps"]:
            for o in step["observations"]:
                backends.setdefault(o["operator"], Counter())[o["backend"]] += 1
    assert {op: dict(c) for op, c in stats.operator_backends.items()} == {op: dict(c) for op, c in backends.items()}
    assert set(backends["ocr"]) == {"paddle", "rapidocr"}
    # Teacher usage is counted once per dialogue, not once per format.
    assert stats.prompt_tokens == sum(r["rr"]["teacher"]["prompt_tokens"] for r in rows)
    assert stats.cost_usd == pytest.approx(sum(r["rr"]["teacher"]["cost_usd"] for r in rows))


def test_card_prose_has_the_tables_the_issue_asks_for(folder):
    text = (folder / "README.md").read_text()
    configs = {r[0].strip("`"): r for r in _body_table(text, "config |")}
    assert configs["orr"][2:5] == ["20", "5", "25"]
    assert configs["rr-tabmwp"][2:5] == ["4", "1", "5"]
    sources = {r[0]: r for r in _body_table(text, "source | subsets")}
    assert sources["TabMWP (`tabmwp`)"][2:] == ["4", "1", "4", "1"]
    operators = {r[0].strip("`"): r for r in _body_table(text, "operator |")}
    stats = collect_stats(folder)
    assert operators["ocr"][1] == str(stats.formats["rr"].operator_calls["ocr"])
    assert operators["rag"][1] == "5"  # one RAG step per infoseek dialogue
    ocr_backends = stats.operator_backends["ocr"]
    assert operators["ocr"][5].split(", ") == [f"`{b}` ({n})" for b, n in ocr_backends.most_common()]
    assert operators["rag"][5] == "`local` (5)" and operators["face_detection"][5] == "-"
    reflections = {r[0].strip("`"): r for r in _body_table(text, "reflection kind")}
    assert reflections["math"][1:] == ["1", "1"]  # tabmwp index 2
    lengths = {r[0]: r for r in _body_table(text, "format | rows")}
    assert float(lengths["RR"][2]) > float(lengths["ORR"][2]) >= 1.0
    licenses = {r[0].strip("`"): r for r in _body_table(text, "source | upstream")}
    assert licenses["tabmwp"][2] == "[CC BY-NC-SA 4.0](https://github.com/lupantech/PromptPG#license)"
    assert "gpt-4o-2024-08-06" in text
    assert "@inproceedings{gao2025mmat1m" in text
    assert f"]({FIGURE_PATH})" in text
    png = (folder / FIGURE_PATH).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_versions_and_changelog_accumulate(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=2, sources=["tabmwp", "infoseek"])
    write_card(folder, version="v1.0.0", changelog=["First cut."])
    meta = read_card_metadata(folder / "README.md")
    assert meta["version"] == "1.0.0"
    assert [e["version"] for e in meta["changelog"]] == ["1.0.0"]
    # Re-render without a version: nothing about versions changes.
    write_card(folder)
    assert read_card_metadata(folder / "README.md")["changelog"] == meta["changelog"]
    # More rows, new version with an automatic changelog line describing the change.
    make_dataset_folder(tmp_path, n_rows_per_source=4, sources=["tabmwp", "infoseek"])
    write_card(folder, version="1.1.0")
    meta2 = read_card_metadata(folder / "README.md")
    assert meta2["version"] == "1.1.0"
    assert [e["version"] for e in meta2["changelog"]] == ["1.1.0", "1.0.0"]
    assert meta2["changelog"][1]["changes"] == ["First cut."]
    assert meta2["changelog"][0]["changes"] == [
        "`rr` rows: train 4 → 8 (+4).", "`orr` rows: train 4 → 8 (+4).",
        "`rr-tabmwp` rows: train 2 → 4 (+2).", "`rr-infoseek` rows: train 2 → 4 (+2).",
        "`orr-tabmwp` rows: train 2 → 4 (+2).", "`orr-infoseek` rows: train 2 → 4 (+2)."]
    # A source removed and a message given: the message first, then the rows removed per config.
    import shutil

    for fmt in ("rr", "orr"):
        shutil.rmtree(folder / "data" / fmt / "infoseek")
    write_card(folder, version="1.2.0", changelog=["Dropped InfoSeek."])
    changes = read_card_metadata(folder / "README.md")["changelog"][0]["changes"]
    assert changes == ["Dropped InfoSeek.", "`rr` rows: train 8 → 4 (-4), validation 2 → 1 (-1).",
                       "`orr` rows: train 8 → 4 (-4), validation 2 → 1 (-1).",
                       "`rr-infoseek`: removed (had train 4, validation 1 rows).",
                       "`orr-infoseek`: removed (had train 4, validation 1 rows)."]
    text = (folder / "README.md").read_text()
    assert text.index("### 1.1.0") < text.index("### 1.0.0")
    # Only the configs whose shards exist are declared.
    names = {c["config_name"] for c in meta2["configs"]}
    assert names == {"rr", "orr", "rr-tabmwp", "orr-tabmwp", "rr-infoseek", "orr-infoseek"}


def test_run_stats_are_shown_and_secrets_are_not(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=1, sources=["tabmwp"])
    secret = "hf_" + "A1b2C3d4E5f6G7h8"
    write_card(folder, run_stats={"quarantined": {"rationale": 3, "reflection": 1}, "wall_time_s": 125.0,
                                  "api_key": "sk-" + "x" * 20, "endpoint": f"https://u:{secret}@example"})
    text = (folder / "README.md").read_text()
    assert "| `quarantined` | rationale: 3, reflection: 1 |" in text
    assert "125.00" in text
    assert secret not in text and "sk-xxxx" not in text


def test_terminal_rendering_shows_metadata_and_body(folder):
    out = render_card_terminal((folder / "README.md").read_text(), width=120, color=False, echo=False)
    assert "card metadata" in out and "tabmwp: cc-by-nc-sa-4.0" in out
    assert "Operator usage" in out and "image_caption" in out
    assert "---" not in out.splitlines()[0]
    # Printing (what `mmat card` relies on) goes to the given console.
    import io

    from rich.console import Console

    buf = io.StringIO()
    render_card_terminal((folder / "README.md").read_text(), console=Console(file=buf, width=120))
    assert "card metadata" in buf.getvalue() and "Operator usage" in buf.getvalue()
    meta, body = split_front_matter((folder / "README.md").read_text())
    assert meta["license"] == "other" and body.lstrip().startswith("# MMAT-1M")


def test_no_shards_is_a_clear_error(tmp_path):
    (tmp_path / "mmat-1m").mkdir()
    with pytest.raises(FileNotFoundError, match="no parquet shards"):
        write_card(tmp_path / "mmat-1m")
