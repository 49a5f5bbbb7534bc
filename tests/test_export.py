"""`mmat export`: ms-swift and LLaMA-Factory (sharegpt) jsonl with `<image>` placeholders and image files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from mmat_1m import FEATURES
from tests.dataset_factory import SYSTEM_PROMPT, make_dataset_folder, make_dialogue
from trainer.exporting import EXPORT_FORMATS, export, flatten_content


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_dataset_folder(
        tmp_path_factory.mktemp("export-data"), n_rows_per_source=4, sources=["tabmwp", "cauldron"], card=True
    )


def _source_rows(folder: Path, config: str) -> list[dict]:
    ds = datasets.load_dataset(str(folder), config, split="train")
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return list(ds)


def _lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("config", ["orr", "rr"])
def test_swift_rows_keep_every_turn_and_point_at_the_original_image_bytes(folder, tmp_path, config):
    result = export(folder, "swift", tmp_path / f"{config}.jsonl", config=config)
    src = _source_rows(folder, config)
    out = _lines(result.out_path)
    assert result.rows == len(src) == len(out) and result.skipped == 0
    assert any(len(r["images"]) == 2 for r in src)  # multi-image rows are covered
    for row, rec in zip(src, out):
        assert set(rec) == {"messages", "images"}
        assert [m["role"] for m in rec["messages"]] == [m["role"] for m in row["messages"]]
        for m, r in zip(row["messages"], rec["messages"]):
            assert isinstance(r["content"], str)
            assert r["content"] == flatten_content(m["content"])
        first_user = next(m for m in rec["messages"] if m["role"] == "user")
        n = len(row["images"])
        assert first_user["content"].startswith("<image>" * n) and not first_user["content"].startswith("<image>" * (n + 1))
        assert sum(m["content"].count("<image>") for m in rec["messages"]) == n == len(rec["images"])
        for path, image in zip(rec["images"], row["images"]):
            assert Path(path).is_absolute()
            assert Path(path).read_bytes() == image["bytes"]
    if config == "rr":
        assert out[0]["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}


def test_sharegpt_rows_alternate_human_gpt_and_register_in_dataset_info(folder, tmp_path):
    result = export(folder, "sharegpt", tmp_path / "lf" / "mmat_rr.jsonl", config="rr", relative_paths=True)
    src = _source_rows(folder, "rr")
    out = _lines(result.out_path)
    assert result.rows == len(src) == len(out)
    for row, rec in zip(src, out):
        convs = rec["conversations"]
        assert [c["from"] for c in convs] == ["human", "gpt"] * (len(convs) // 2)
        assert rec["system"] == SYSTEM_PROMPT
        n_assistant = sum(m["role"] == "assistant" for m in row["messages"])
        assert sum(c["from"] == "gpt" for c in convs) == n_assistant >= 3
        assert sum(c["value"].count("<image>") for c in convs) == len(rec["images"]) == len(row["images"])
        for rel, image in zip(rec["images"], row["images"]):
            assert not Path(rel).is_absolute()
            assert (Path(result.out_path).parent / rel).read_bytes() == image["bytes"]
    info = json.loads(Path(result.dataset_info_path).read_text())
    assert info["mmat_rr"] == {
        "file_name": "mmat_rr.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "images": "images"},
    }
    # a second export adds its entry beside the first; ORR rows have no system prompt, so its entry maps
    # no `system` column (LLaMA-Factory reads every mapped column: mapping it was `KeyError: 'system'`)
    orr = export(folder, "sharegpt", tmp_path / "lf" / "mmat_orr.jsonl", config="orr")
    info = json.loads(Path(result.dataset_info_path).read_text())
    assert set(info) == {"mmat_rr", "mmat_orr"}
    assert info["mmat_orr"]["columns"] == {"messages": "conversations", "images": "images"}
    assert all(set(rec) == {"conversations", "images"} for rec in _lines(orr.out_path))


def test_dataset_info_maps_exactly_the_columns_the_rows_have(tmp_path):
    text_only = make_dialogue("tabmwp", "train", 0)["rr"]
    text_only["images"] = []
    text_only["messages"][1]["content"] = [b for b in text_only["messages"][1]["content"] if b["type"] == "text"]
    ds = datasets.Dataset.from_list([text_only], features=FEATURES)
    result = export(ds, "sharegpt", tmp_path / "t.jsonl")
    assert _lines(result.out_path)[0].keys() == {"conversations", "system"}
    entry = json.loads(Path(result.dataset_info_path).read_text())["t"]
    assert entry["columns"] == {"messages": "conversations", "system": "system"}


@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_relative_export_is_a_folder_that_moves_between_machines(folder, tmp_path, format):
    store = tmp_path / "image-store"  # a shared image folder outside the export: images get linked beside the jsonl
    result = export(folder, format, tmp_path / "exp" / "mmat_rr.jsonl", config="rr", images_dir=store,
                    relative_paths=True)
    assert result.images_store == str(store.resolve()) and result.images_linked == result.images > 0
    assert Path(result.images_dir) == tmp_path / "exp" / "mmat_rr_images"
    stored = {p.name: p for p in store.iterdir()}
    for p in Path(result.images_dir).iterdir():
        assert p.stat().st_ino == stored[p.name].stat().st_ino  # a hard link, not a second copy
    moved = tmp_path / "other-machine" / "exp"
    shutil.copytree(tmp_path / "exp", moved)  # copytree writes real files: links become copies
    shutil.rmtree(tmp_path / "exp")
    shutil.rmtree(store)
    src = _source_rows(folder, "rr")
    out = _lines(str(moved / "mmat_rr.jsonl"))
    assert len(out) == len(src) == result.rows
    for row, rec in zip(src, out):
        assert len(rec["images"]) == len(row["images"])
        for rel, image in zip(rec["images"], row["images"]):
            assert not Path(rel).is_absolute() and not rel.startswith("..")
            assert (moved / rel).read_bytes() == image["bytes"]


def test_relative_export_copies_when_a_link_is_impossible(folder, tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError("Invalid cross-device link")

    monkeypatch.setattr("trainer.exporting.os.link", no_links)
    result = export(folder, "swift", tmp_path / "exp" / "orr.jsonl", config="orr", images_dir=tmp_path / "store",
                    relative_paths=True)
    for p in Path(result.images_dir).iterdir():
        assert p.stat().st_ino != (tmp_path / "store" / p.name).stat().st_ino
        assert p.read_bytes() == (tmp_path / "store" / p.name).read_bytes()


def test_rows_that_cannot_be_exported_faithfully_are_skipped_and_counted(tmp_path):
    good = make_dialogue("tabmwp", "train", 0)["orr"]
    bad = make_dialogue("tabmwp", "train", 1)["orr"]
    bad["messages"][0]["content"][-1]["text"] = "What does <image> mean here?"
    ds = datasets.Dataset.from_list([good, bad], features=FEATURES)  # a datasets object works as input too
    result = export(ds, "swift", tmp_path / "x.jsonl")
    assert result.rows == 1 and result.skipped == 1 and result.skipped_ids == [bad["id"]]
    assert len(_lines(result.out_path)) == 1


def test_rows_whose_messages_are_not_the_layout_are_skipped_with_the_parsers_reason(tmp_path, caplog):
    # Export reads rows with the project's one dialogue parser (as `mmat view` does): an RR row whose
    # image blocks moved out of the first user turn still alternates user/assistant and still has one
    # block per image, yet is not the RR layout, so it is skipped with the parser's reason.
    good = make_dialogue("tabmwp", "train", 0)["rr"]
    bad = make_dialogue("tabmwp", "train", 1)["rr"]
    users = [m for m in bad["messages"] if m["role"] == "user"]
    images = [b for b in users[0]["content"] if b["type"] == "image"]
    assert images and len(users) > 1
    users[0]["content"] = [b for b in users[0]["content"] if b["type"] != "image"]
    users[-1]["content"] = images + users[-1]["content"]
    ds = datasets.Dataset.from_list([good, bad], features=FEATURES)
    with caplog.at_level("WARNING", logger="trainer.exporting"):
        result = export(ds, "sharegpt", tmp_path / "x.jsonl", config="rr")
    assert result.rows == 1 and result.skipped == 1 and result.skipped_ids == [bad["id"]]
    assert "not the rr layout" in caplog.text and "image blocks outside the first user turn" in caplog.text


def test_identical_images_are_written_once_and_unknown_formats_fail(folder, tmp_path):
    rr = export(folder, "swift", tmp_path / "a.jsonl", config="rr", images_dir=tmp_path / "imgs")
    orr = export(folder, "swift", tmp_path / "b.jsonl", config="orr", images_dir=tmp_path / "imgs")
    assert rr.images == orr.images == len(list((tmp_path / "imgs").iterdir()))  # RR and ORR share images
    assert EXPORT_FORMATS == ("swift", "sharegpt")
    with pytest.raises(ValueError, match="unknown export format"):
        export(folder, "alpaca", tmp_path / "c.jsonl")


def test_cli_relative_paths_flag(folder, tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app

    out = tmp_path / "lf" / "mmat_orr.jsonl"
    result = CliRunner().invoke(app, ["export", str(folder), "--format", "sharegpt", "--out", str(out), "--config",
                                      "orr", "--relative-paths", "--images-dir", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    assert "images linked beside it from" in result.output
    for rec in _lines(str(out)):
        assert all(not Path(p).is_absolute() and (out.parent / p).is_file() for p in rec["images"])
