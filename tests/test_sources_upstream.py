"""Source adapters on files in each upstream's *released* format (tests/fixtures/upstream, see its README):
every real record is read right, a layout the adapter does not know fails once, and nothing outside the
source folder is read.

The fixtures were written from the upstreams' published formats (file names, folders, fields, and the
templates their own build scripts append), not by the adapters, so an adapter that only agrees with
our bundled samples fails here. Broken variants are made in tmp copies. Every test fails on the code
before issue 12.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from generation.schema import Quarantined, Sample
from generation.sources import SourceConfig, SourceError, read_source
from generation.sources.base import MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream"
OUTSIDE = "image path outside the source folder"


def read(kind: str, root: Path, **kw) -> list[Sample | Quarantined]:
    return list(read_source(SourceConfig(kind=kind, path=root, **kw)))


def split(items):
    good = {x.id: x for x in items if isinstance(x, Sample)}
    bad = {x.sample_id: x for x in items if isinstance(x, Quarantined)}
    assert all(q.stage == "foundation" and q.reason and "\n" not in q.reason for q in bad.values())
    return good, bad


def copy(kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(UPSTREAM / kind, tmp_path / kind, symlinks=True))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- TabMWP -----------------------------------------------------------------------------------------
def test_tabmwp_reads_the_released_1k_subsets_and_keeps_clock_time_answers(tmp_path):
    good, bad = split(read("tabmwp", UPSTREAM / "tabmwp"))  # only problems_dev1k.json / problems_test1k.json
    assert not bad and len(good) == 5
    bus = good["tabmwp/multi_choice/4821"]
    assert bus.answer == "B" and bus.qas[0].meta["answer_text"] == "2:10 P.M."  # the period is part of the answer
    assert "\nB. 2:10 P.M.\n" in bus.question and bus.question.endswith("\n" + MULTIPLE_CHOICE_PROMPT)
    assert bus.split == "validation" and good["tabmwp/multi_choice/6044"].answer == "C"
    # the same problems under the full files' names: clock times are read too, not "not one of the choices"
    full = copy("tabmwp", tmp_path)
    (full / "problems_dev1k.json").rename(full / "problems_dev.json")
    (full / "problems_test1k.json").rename(full / "problems_test.json")
    good_full, bad_full = split(read("tabmwp", full))
    assert not bad_full and set(good_full) == set(good)
    # beside the full file, a 1k subset is not read again (its problems repeat dev's)
    shutil.copy(UPSTREAM / "tabmwp" / "problems_dev1k.json", full / "problems_dev1k.json")
    assert [x.id for x in read("tabmwp", full)] == [x.id for x in read("tabmwp", UPSTREAM / "tabmwp")]


def test_tabmwp_truncated_or_undecodable_problems_file_costs_only_the_records_it_touches(tmp_path):
    root = copy("tabmwp", tmp_path)
    text = (root / "problems_dev1k.json").read_text()
    cut = text.index('"5133"') + 40  # inside the third problem
    (root / "problems_dev1k.json").write_text(text[:cut])
    raw = (root / "problems_test1k.json").read_bytes().replace(b"North Pier", b"North \xffPier", 1)
    (root / "problems_test1k.json").write_bytes(raw)
    good, bad = split(read("tabmwp", root))
    assert set(good) == {"tabmwp/multi_choice/4821", "tabmwp/free_text/4907", "tabmwp/multi_choice/6044"}
    assert "truncated" in bad["tabmwp/tabmwp/5133"].reason
    assert "invalid UTF-8" in bad["tabmwp/multi_choice/6012"].reason


# --- Visual CoT ---------------------------------------------------------------------------------------
def test_visual_cot_textcap_metadata_rows_find_their_images_in_cot_textvqa(tmp_path):
    root = copy("visual_cot", tmp_path)
    (root / "viscot_363k.json").unlink()  # the metadata-only layout
    good, bad = split(read("visual_cot", root))
    assert not bad and len(good) == 4
    textcap = [s for s in good.values() if s.subset == "textcap"]
    assert len(textcap) == 2 and all(Path(s.images[0].path).parent.name == "textvqa" for s in textcap)
    assert good["visual_cot/textcap/1"].meta["bbox"] == [20, 10, 34, 16]  # the converter's merge of two boxes


def ids(items) -> set[str]:
    return {x.id if isinstance(x, Sample) else x.sample_id for x in items}


def test_visual_cot_ids_are_the_same_in_every_layout(tmp_path):
    training = ids(read("visual_cot", UPSTREAM / "visual_cot"))
    assert training == {"visual_cot/textcap/0", "visual_cot/textcap/1", "visual_cot/cub/0", "visual_cot/cub/1"}
    github = copy("visual_cot", tmp_path / "a")
    (github / "viscot_363k.json").unlink()
    hub = copy("visual_cot", tmp_path / "b")
    (hub / "viscot_363k.json").unlink()
    (hub / "viscot_dataset").rename(hub / "metadata")  # the Hub repo's folder name
    assert ids(read("visual_cot", github)) == training == ids(read("visual_cot", hub))


# --- InfoSeek -----------------------------------------------------------------------------------------
def test_infoseek_reads_the_oven_image_layout_without_id2image(tmp_path):
    good, bad = split(read("infoseek", UPSTREAM / "infoseek"))
    assert not bad and len(good) == 5
    lake = good["infoseek/infoseek/infoseek_train_00000002"]
    assert Path(lake.images[0].path).relative_to((UPSTREAM / "infoseek").resolve()).as_posix() == \
        "oven_images/05/oven_05520031.JPEG"  # the shard rule, and the file's own extension
    assert lake.meta["entity_id"] == "Q100002" and lake.meta["entity_text"] == "Lake Example"  # *_withkb.jsonl
    assert good["infoseek/infoseek/infoseek_val_00000001"].answer == "A. Example"
    assert good["infoseek/infoseek/infoseek_val_00000000"].split == "validation"


def test_infoseek_id2image_paths_stay_inside_unless_allowed(tmp_path, caplog):
    root = copy("infoseek", tmp_path)
    elsewhere = tmp_path / "my-oven-copy" / "oven_00871450.png"
    elsewhere.parent.mkdir()
    (root / "oven_images/00/oven_00871450.png").rename(elsewhere)
    (root / "id2image.jsonl").write_text(
        json.dumps({"image_id": "oven_00871450", "image_path": str(elsewhere)}) + "\n"
        + json.dumps({"image_id": "oven_04011235", "image_path": "oven_images/04/oven_04011235.jpg"}) + "\n")
    good, bad = split(read("infoseek", root))
    assert set(bad) == {"infoseek/infoseek/infoseek_val_00000001"} and len(good) == 4
    assert bad["infoseek/infoseek/infoseek_val_00000001"].reason.startswith(OUTSIDE)
    with caplog.at_level(logging.INFO, logger="mmat.sources"):
        good, bad = split(read("infoseek", root, allow_outside_paths=True))
    assert not bad and good["infoseek/infoseek/infoseek_val_00000001"].images[0].path == str(elsewhere.resolve())
    assert any("allow_outside_paths" in r.message and str(root.resolve()) in r.message for r in caplog.records)


# --- The Cauldron ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cauldron() -> dict[str, Sample]:
    good, bad = split(read("cauldron", UPSTREAM / "cauldron"))
    assert not bad
    return good


def test_cauldron_answers_lose_the_builders_period_and_keep_their_own(cauldron):
    answers = [q.answer for i in range(8) for q in cauldron[f"cauldron/st_vqa/{i}"].qas]
    assert answers == ["Starbucks", "42", "No", "Exit 12", "U.S.", "2:10 p.m.", "Main st.", "Yes"]
    assert cauldron["cauldron/st_vqa/1"].meta["math"] is True  # "42." read as a number
    assert [cauldron[f"cauldron/docvqa/{i}"].answer for i in (1, 3, 7)] == ["Dr. example", "$18.60", "Example corp."]
    assert cauldron["cauldron/hateful_memes/0"].answer == "No" and cauldron["cauldron/iconqa/0"].answer == "B"


def test_cauldron_every_builder_instruction_is_recognised_and_the_constraint_appears_once(cauldron):
    for i in range(8):  # each of PROMPTS_ANSWER_SHORTLY, once
        question = cauldron[f"cauldron/st_vqa/{i}"].question
        assert question.count("\n") == 1 and question.endswith("?\n" + SHORT_ANSWER_PROMPT), question
    for i in range(11):  # each of QUESTION_BRIEVETY_HINT, once
        question = cauldron[f"cauldron/docvqa/{i}"].question
        assert question.count("\n") == 1 and question.endswith("?\n" + SHORT_ANSWER_PROMPT), question
    memes = cauldron["cauldron/hateful_memes/1"]
    assert memes.question == "Is the language used in this meme hateful?\nAnswer yes or no."
    plot = cauldron["cauldron/plotqa/0"]  # a multi-turn hint opens the dialogue: nothing is added to it
    assert plot.qas[0].question == "Make your answers short.\nWhat is the highest value?"
    assert plot.qas[1].question == "In which year is the value lowest?\n" + SHORT_ANSWER_PROMPT
    tqa = cauldron["cauldron/tqa/0"]
    assert tqa.choices == ["precipitation", "evaporation", "condensation"] and tqa.answer == "B"
    assert tqa.question.endswith("C. condensation.\n" + MULTIPLE_CHOICE_PROMPT)


def test_cauldron_raven_options_drawn_in_the_image_make_a_letter_question(cauldron):
    raven = cauldron["cauldron/raven/0"]
    assert raven.choices == list("ABCDEFGH") and raven.answer == "E" and raven.qas[0].meta["choices_in_image"]
    assert raven.question == "Which figure should complete the logical sequence?\n" + MULTIPLE_CHOICE_PROMPT
    yes_no = cauldron["cauldron/raven/1"]
    assert yes_no.question.endswith("Yes or no.") and yes_no.answer == "No" and not yes_no.choices


def test_cauldron_table_dumps_are_dropped_and_counted_and_the_filter_is_configurable(cauldron):
    for row, kept in (("cauldron/robut_wtq/0", "Harbor City"), ("cauldron/robut_wtq/1", "12")):
        assert [q.answer for q in cauldron[row].qas] == [kept] and cauldron[row].meta["dropped_qas"] == 1
    assert all(s.meta["dropped_qas"] == 0 for k, s in cauldron.items() if "robut" not in k)
    unfiltered = {s.id: s for s in read("cauldron", UPSTREAM / "cauldron", subsets=["robut_wtq"], drop_qas=[])}
    dump = unfiltered["cauldron/robut_wtq/0"].qas[1]
    assert dump.question == "Parse the full table." and dump.answer.startswith("{'header'")


# --- LLaVA-CoT ------------------------------------------------------------------------------------------
def test_llava_cot_empty_conclusion_drops_that_pair_not_the_dialogue():
    good, bad = split(read("llava_cot", UPSTREAM / "llava_cot"))
    assert not bad and len(good) == 3
    clock = next(s for s in good.values() if s.subset == "coco")
    assert [q.answer for q in clock.qas] == ["2:10 P.M.", "White"] and clock.meta["dropped_qas"] == 1
    chart = next(s for s in good.values() if s.subset == "chartqa")
    assert chart.question.count(SHORT_ANSWER_PROMPT) == 1 and chart.answer == "83"
    assert next(s for s in good.values() if s.subset == "sqa").answer == "B"


# --- Any JSONL source: one bad line is one record ----------------------------------------------------------
def test_invalid_utf8_non_object_and_truncated_lines_cost_one_record_each(tmp_path):
    root = copy("llava_cot", tmp_path)
    with open(root / "train.jsonl", "ab") as fh:
        fh.write(b'{"id": "bad-bytes", "image": "sqa/train/101/image.png", "conversations": "caf\xc3\x28"}\n')
        fh.write(b'[1, 2, 3]\n"just a string"\n')
        fh.write(b'{"id": "cut-off", "image": "sqa/tr')  # a truncated download
    good, bad = split(read("llava_cot", root))
    assert len(good) == 3 and len(bad) == 4
    reasons = sorted(q.reason for q in bad.values())
    assert any(r.startswith("line 4: invalid UTF-8") for r in reasons)
    assert "line 5 is an array, not a JSON object" in reasons and "line 6 is a string, not a JSON object" in reasons
    assert any(r.startswith("line 7: not valid JSON") and "truncated" in r for r in reasons)
    seek = copy("infoseek", tmp_path)
    with open(seek / "infoseek_val.jsonl", "ab") as fh:
        fh.write(b'{"data_id": "infoseek_val_00000002", "image_id": "oven_04011235", "question": "\xff?"}\n')
    good, bad = split(read("infoseek", seek))
    # the record keeps its own id (so fixing the byte and `mmat retry` finds it again)
    assert len(good) == 5 and list(bad) == ["infoseek/infoseek/infoseek_val_00000002"]
    assert bad["infoseek/infoseek/infoseek_val_00000002"].reason.startswith("line 3: invalid UTF-8")


def test_truncated_visual_cot_training_file_keeps_every_complete_record(tmp_path):
    root = copy("visual_cot", tmp_path)
    text = (root / "viscot_363k.json").read_text()
    (root / "viscot_363k.json").write_text(text[: text.rindex('"question_id"')])  # cut inside the last record
    good, bad = split(read("visual_cot", root))
    assert len(good) == 3 and len(bad) == 1 and "truncated" in next(iter(bad.values())).reason


# --- Paths: nothing outside the source folder ------------------------------------------------------------
def test_image_paths_that_leave_the_source_folder_are_quarantined(tmp_path):
    root = copy("llava_cot", tmp_path)
    outside = tmp_path / "outside.png"
    shutil.copy(root / "sqa/train/101/image.png", outside)  # a perfectly good image, just not ours to read
    (root / "sqa/train/101/link.png").symlink_to(outside)
    (root / "sqa/train/101/inside-link.png").symlink_to(root / "sqa/train/101/image.png")
    base = jsonl(root / "train.jsonl")[0]
    escapes = {"dotdot": "../outside.png", "absolute": str(outside), "symlink": "sqa/train/101/link.png",
               "proc": "/proc/self/environ", "deep": "sqa/../../outside.png"}
    harmless = {"inside-link": "sqa/train/101/inside-link.png", "dot-inside": "sqa/train/../train/101/image.png"}
    with open(root / "train.jsonl", "a") as fh:
        for name, image in {**escapes, **harmless}.items():
            fh.write(json.dumps({**base, "id": name, "image": image}) + "\n")
    good, bad = split(read("llava_cot", root))
    assert {k.rsplit("/", 1)[1] for k in bad} == set(escapes)
    assert all(q.reason.startswith(OUTSIDE) for q in bad.values())
    assert {"inside-link", "dot-inside"} <= {k.rsplit("/", 1)[1] for k in good}
    good, bad = split(read("llava_cot", root, allow_outside_paths=True))  # the explicit opt-in
    assert not any(q.reason.startswith(OUTSIDE) for q in bad.values()) and "llava_cot/sqa/symlink" in good


def test_an_image_folders_real_paths_are_those_of_resolving_every_path_whole(tmp_path, monkeypatch):
    """`ImageFolder` resolves each image's folder once and keeps it (a third of reading a record went to
    resolving every component): every path, asked in any order and again, gives exactly
    `(root / rel).resolve()`, through folder and file symlinks pointing in and out, `..`, `.`, missing
    names and a symlink loop; with more folders than it keeps, it starts over and stays exact."""
    import generation.sources.base as base
    from generation.sources.base import ImageFolder

    root = tmp_path / "src"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "out" / "deep").mkdir(parents=True)
    (root / "a" / "b" / "img.png").write_bytes(b"x")
    (tmp_path / "out" / "deep" / "img.png").write_bytes(b"y")
    (root / "out-dir").symlink_to(tmp_path / "out")  # a folder pointing out
    (root / "in-dir").symlink_to(root / "a")  # a folder pointing in
    (root / "a" / "b" / "out-file.png").symlink_to(tmp_path / "out" / "deep" / "img.png")
    (root / "a" / "b" / "in-file.png").symlink_to("img.png")
    (root / "a" / "b" / "chain.png").symlink_to(root / "in-dir" / "b" / "in-file.png")
    (root / "a" / "b" / "loop.png").symlink_to(root / "a" / "b" / "loop.png")
    rels = ["a/b/img.png", "out-dir/deep/img.png", "in-dir/b/img.png", "a/b/out-file.png", "a/b/in-file.png",
            "a/b/chain.png", "a/b/../b/img.png", "a/../../out/deep/img.png", "a/./b/img.png", "a/b/missing.png",
            "missing/dir/x.png", "a/b", "a/b/.", "a/b/..", ".", "..", "img.png", "out-dir/deep/../deep/img.png",
            "in-dir/b/chain.png", "a/b/loop.png"]
    folder = ImageFolder.of(SourceConfig(kind="llava_cot", path=root), root)

    def whole(rel):
        try:
            return (root / rel).resolve()
        except RuntimeError as exc:  # a symlink loop
            return type(exc)

    def kept(rel):
        try:
            return folder._real(Path(rel))
        except RuntimeError as exc:
            return type(exc)

    expected = {rel: whole(rel) for rel in rels}
    assert expected["out-dir/deep/img.png"] == tmp_path / "out" / "deep" / "img.png"  # the fixture does point out
    for rel in rels + rels[::-1]:  # cold, then from kept folders
        assert kept(rel) == expected[rel], rel
    monkeypatch.setattr(base, "_MAX_FOLDERS", 2)
    folder = ImageFolder.of(SourceConfig(kind="llava_cot", path=root), root)
    for rel in rels + rels[::-1]:
        assert kept(rel) == expected[rel], rel
    assert len(folder._folders) <= 2


# --- Layouts the adapters do not know: one error, at the start ----------------------------------------------
def _no_tables(root: Path) -> None:
    for split in ("dev", "test"):
        (root / f"problems_{split}1k.json").rename(root / f"problems_{split}.json")
    shutil.rmtree(root / "tables")


def _no_images(root: Path) -> None:
    shutil.rmtree(root / "oven_images")


def _no_cot(root: Path) -> None:
    shutil.rmtree(root / "cot")


@pytest.mark.parametrize("kind, break_it, expected", [
    ("tabmwp", _no_tables, "tables/"),
    ("infoseek", _no_images, "oven_images/{shard}/{image_id}.jpg"),
    ("visual_cot", _no_cot, "cot/"),
])
def test_a_layout_the_adapter_does_not_recognise_fails_once_at_the_start(tmp_path, kind, break_it, expected):
    root = copy(kind, tmp_path)
    break_it(root)
    items = read_source(SourceConfig(kind=kind, path=root))
    with pytest.raises(SourceError) as err:
        next(items)  # before any record
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cauldron_subset_folder_given_as_the_root_fails_once(tmp_path):
    with pytest.raises(SourceError, match="point `path:` at its parent"):
        read("cauldron", UPSTREAM / "cauldron" / "st_vqa")


# --- Repeated ids ------------------------------------------------------------------------------------------
def test_a_repeated_id_is_quarantined_under_its_own_id_naming_the_first_record(tmp_path):
    root = copy("llava_cot", tmp_path)
    lines = (root / "train.jsonl").read_text().splitlines()
    (root / "train.jsonl").write_text("\n".join(lines + [lines[1], lines[1]]) + "\n")
    items = read("llava_cot", root)
    good, bad = split(items)
    first = json.loads(lines[1])
    sid = f"llava_cot/chartqa/{first['id']}"
    assert len(good) == 3 and good[sid].qas[0].answer == "83"
    assert set(bad) == {sid + "#repeat-2", sid + "#repeat-3"}
    assert bad[sid + "#repeat-2"].reason.startswith(f"repeats the id {sid} of the record at train.jsonl: line 2 "
                                                    "(this record: train.jsonl: line 4)")
    assert bad[sid + "#repeat-2"].error_type == "RepeatedId"


def test_one_normal_form_for_answers_and_choices():
    from generation.answers import normalise_answer

    same = [("2:10 P.M.", "2:10 p.m"), ("2:10 P.M.", "2:10 PM"), ("U.S.", "us"), ("42.", "42"), ("1,000", "1000"),
            ("18.60", "18.6"), ("The answer is: Starbucks.", "starbucks"), ("Café", "cafe")]
    assert all(normalise_answer(a) == normalise_answer(b) for a, b in same)
    assert normalise_answer("3.5") != normalise_answer("35") and normalise_answer("2:10") != normalise_answer("2:40")


def test_a_hub_snapshot_may_read_its_own_blobs_and_nothing_else(tmp_path):
    """Hub snapshots hold symlinks into the cached repo's `blobs/`; those stay readable, others do not."""
    from generation.sources.base import ImageFolder

    repo = tmp_path / "hub" / "datasets--Xkev--LLaVA-CoT-100k"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    image = UPSTREAM / "llava_cot" / "sqa/train/101/image.png"
    (repo / "blobs" / "f00d").write_bytes(image.read_bytes())
    (snapshot / "image.png").symlink_to("../../blobs/f00d")
    (tmp_path / "elsewhere.png").write_bytes(image.read_bytes())
    (snapshot / "escape.png").symlink_to(tmp_path / "elsewhere.png")
    folder = ImageFolder.of(SourceConfig(kind="llava_cot", hub_id="Xkev/LLaVA-CoT-100k"), snapshot)
    assert folder.file("llava_cot/x/1", "image.png").path == str((repo / "blobs" / "f00d").resolve())
    with pytest.raises(Quarantined, match=OUTSIDE):
        folder.file("llava_cot/x/2", "escape.png")
