"""Source adapters on the bundled samples: field mapping, ids, splits, and quarantine of bad records.

Values are checked against the native files themselves (not against the adapter's own output), so a
broken field mapping fails here. Broken records are made in tmp copies; the bundled samples stay clean.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from generation.schema import Quarantined, Sample
from generation.sources import ADAPTERS, SOURCE_IDS, SourceConfig, SourceError, read_source
from generation.sources.base import (MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT, add_response_constraint,
                                     is_numeric, parse_listed_choices)
from generation.splits import assign_split
from operators.images import decode_rgb

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def read(kind: str, root: Path | None = None, **kw) -> list[Sample | Quarantined]:
    return list(read_source(SourceConfig(kind=kind, path=root or SAMPLES / kind, **kw)))


def samples(kind: str, **kw) -> dict[str, Sample]:
    items = read(kind, **kw)
    assert all(isinstance(x, Sample) for x in items), [str(x) for x in items if not isinstance(x, Sample)]
    return {s.id: s for s in items}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def bundled() -> dict[str, dict[str, Sample]]:
    return {kind: samples(kind) for kind in SOURCE_IDS}


def copy_source(kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLES / kind, tmp_path / kind))


# --- every source ---------------------------------------------------------------------------------
def test_adapters_cover_the_five_sources():
    assert tuple(ADAPTERS) == SOURCE_IDS == ("visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek")


@pytest.mark.parametrize("kind", SOURCE_IDS)
def test_bundled_sample_reads_clean_with_stable_unique_ids(kind, bundled):
    got = bundled[kind]
    assert len(got) >= 10
    again = samples(kind)
    assert list(again) == list(got)  # same ids, same order on every read
    for sid, s in got.items():
        assert s.source == kind and sid == s.id and sid.startswith(f"{kind}/{s.subset}/")
        assert s.qas and all(q.question.strip() and q.answer.strip() for q in s.qas)
        assert "<image>" not in " ".join(q.question for q in s.qas)
        assert isinstance(s.meta.get("math"), bool) and s.meta["math"] == any(q.meta["math"] for q in s.qas)


@pytest.mark.parametrize("kind", SOURCE_IDS)
def test_every_image_decodes_to_real_pixels(kind, bundled):
    for s in bundled[kind].values():
        assert s.images
        for ref in s.images:
            im = decode_rgb(ref.read_bytes())
            assert min(im.size) >= 64
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 50, f"{s.id}: image looks blank"


@pytest.mark.parametrize("kind", SOURCE_IDS)
def test_each_source_lands_in_both_splits_at_quarter_validation(kind, bundled):
    counts = Counter(assign_split(s, 0.25) for s in bundled[kind].values())
    assert counts["train"] > 0 and counts["validation"] > 0, counts


def test_bundled_samples_stay_small():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total <= 3 * 1024 * 1024


# --- Visual CoT -----------------------------------------------------------------------------------
def test_visual_cot_maps_question_answer_and_bbox_from_native_record(bundled):
    native = json.loads((SAMPLES / "visual_cot" / "viscot_363k.json").read_text())
    got = bundled["visual_cot"]
    assert len(got) == len(native)
    for rec in native:
        s = got[f"visual_cot/{rec['dataset']}/{rec['question_id']}"]
        question = rec["conversations"][0]["value"].removeprefix("<image>\n").split(" Please provide the bounding box")[0]
        qa = s.qas[0]
        assert qa.question.startswith(question + "\n") and "bounding box" not in qa.question
        assert qa.answer == rec["conversations"][-1]["value"]
        box = json.loads(rec["image"][1].split("###")[1])
        assert qa.meta["bbox"] == box == s.meta["bbox"]
        assert qa.meta["bbox_normalised"] == rec["conversations"][1]["value"]
        assert str(box[0]) in qa.source_rationale and str(box[3]) in qa.source_rationale
        assert Path(s.images[0].path).as_posix().endswith(rec["image"][0])
        assert s.meta["width"] and s.meta["height"]  # joined from viscot_dataset/*.jsonl
        assert 0 <= box[0] < box[2] <= s.meta["width"] and 0 <= box[1] < box[3] <= s.meta["height"]
    total = got["visual_cot/sroie/1"]  # question_id: the line in sroie_cot_train.jsonl, as the converter numbers it
    assert total.answer == "32.60" and total.meta["math"] is True
    assert total.question.endswith("\n" + SHORT_ANSWER_PROMPT)
    assert {s.subset for s in got.values()} >= {"textvqa", "docvqa", "sroie", "gqa", "flickr30k"}


def test_visual_cot_reads_metadata_only_folder_with_the_same_ids(tmp_path, bundled):
    root = copy_source("visual_cot", tmp_path)
    (root / "viscot_363k.json").unlink()
    got = [x for x in read("visual_cot", root)]
    assert len(got) == 15 and all(isinstance(x, Sample) for x in got), [str(x) for x in got if isinstance(x, Quarantined)]
    assert {s.id for s in got} == set(bundled["visual_cot"])  # same record, same id, whichever file it came from
    by_q = {s.qas[0].answer: s for s in got}
    assert by_q["INV-20417"].subset == "dude" and by_q["INV-20417"].meta["bbox"]
    textcap = by_q["elm st"]  # a textcap row: its image lives in cot/textvqa/
    assert textcap.subset == "textcap" and Path(textcap.images[0].path).parent.name == "textvqa"


# --- LLaVA-CoT ------------------------------------------------------------------------------------
def test_llava_cot_keeps_turns_together_and_maps_structured_cot(bundled):
    native = [json.loads(x) for x in (SAMPLES / "llava_cot" / "train.jsonl").read_text().splitlines()]
    got = bundled["llava_cot"]
    assert len(got) == len(native)
    for rec in native:
        subset = rec["image"].split("/")[0]
        s = got[f"llava_cot/{subset}/{rec['id']}"]
        assert len(s.qas) == len(rec["conversations"]) // 2
        for qa, gpt in zip(s.qas, rec["conversations"][1::2]):
            reasoning = gpt["value"].split("<REASONING>")[1].split("</REASONING>")[0].strip()
            assert qa.source_rationale == reasoning
            assert qa.meta["conclusion"] == gpt["value"].split("<CONCLUSION>")[1].split("</CONCLUSION>")[0].strip()
        assert Path(s.images[0].path).as_posix().endswith(rec["image"])
    multi = [s for s in got.values() if len(s.qas) > 1]
    assert len(multi) >= 2
    chart = next(s for s in multi if s.subset == "chartqa")
    assert [q.answer for q in chart.qas] == ["42", "2020"]
    sqa = next(s for s in got.values() if s.subset == "sqa" and "animal" in s.question)
    assert sqa.choices == ["bird", "mammal", "reptile", "fish"] and sqa.answer == "B"  # "The answer is B."
    assert sqa.question.endswith(MULTIPLE_CHOICE_PROMPT) and sqa.question.count(MULTIPLE_CHOICE_PROMPT) == 1
    astronaut = next(s for s in multi if s.subset == "coco")
    assert [q.answer for q in astronaut.qas] == ["C", "B"]
    assert all(q.question.count(MULTIPLE_CHOICE_PROMPT) == 1 for q in astronaut.qas)
    open_ended = next(s for s in got.values() if s.question.startswith("What is the man doing?"))
    assert open_ended.question == "What is the man doing?"  # long answer: no constraint
    geo = next(s for s in got.values() if s.subset == "geoqa+")
    assert geo.meta["math"] is True and geo.answer == "B" and geo.choices[1] == "70°"


# --- The Cauldron ---------------------------------------------------------------------------------
def test_cauldron_keeps_all_qas_of_an_image_and_maps_texts(bundled):
    got = bundled["cauldron"]
    for subset_dir in sorted((SAMPLES / "cauldron").iterdir()):
        rows = pq.read_table(next(subset_dir.glob("*.parquet"))).to_pylist()
        for i, row in enumerate(rows):
            s = got[f"cauldron/{subset_dir.name}/{i}"]
            texts = [t for t in row["texts"] if t["user"] != "Parse the full table."]  # dropped: a table dump
            assert s.subset == subset_dir.name and len(s.qas) == len(texts)
            assert s.meta["dropped_qas"] == len(row["texts"]) - len(texts)
            assert [ref.data for ref in s.images] == [im["bytes"] for im in row["images"]]
            for qa, t in zip(s.qas, texts):
                assert qa.question.splitlines()[0] == t["user"].splitlines()[0]
                native = t["assistant"].removeprefix("Answer: ")
                assert qa.answer in (native, native.removesuffix("."))  # the builder's added period goes
                assert qa.meta["cauldron_source"] == t["source"]
    assert {s.subset for s in got.values()} >= {"hateful_memes", "screen2words", "st_vqa", "vistext", "robut_wtq",
                                                "iconqa", "raven", "intergps", "tqa"}
    st = got["cauldron/st_vqa/0"]
    assert [q.answer for q in st.qas] == ["Sunrise bakery", "555-0142", "Fresh bread"]  # not "Sunrise bakery."
    assert all(q.question.count("\n") == 1 and q.question.endswith("\n" + SHORT_ANSWER_PROMPT) for q in st.qas)
    memes = got["cauldron/hateful_memes/0"]  # "Answer yes or no." is the question's one instruction
    assert memes.question == "Does this meme promote hate speech?\nAnswer yes or no." and memes.answer == "No"
    robut = got["cauldron/robut_wtq/0"]
    assert [q.answer for q in robut.qas] == ["Harbor City", "3", "26"] and all(q.meta["math"] for q in robut.qas[1:])
    raven = got["cauldron/raven/0"]  # the options are drawn in the image: still a letter question
    assert raven.choices == list("ABCDEFGH") and raven.question.endswith("\n" + MULTIPLE_CHOICE_PROMPT)
    tqa = got["cauldron/tqa/0"]
    assert tqa.choices == ["precipitation", "evaporation", "collection", "condensation"] and tqa.answer == "B"
    icon = got["cauldron/iconqa/0"]
    assert icon.choices == ["6", "7", "8"] and icon.answer == "B" and icon.meta["math"] is True
    assert icon.question.endswith("\n" + MULTIPLE_CHOICE_PROMPT) and "Answer with the letter." not in icon.question
    assert got["cauldron/vistext/0"].question == "Describe this chart."
    assert got["cauldron/raven/0"].meta["math"] and not got["cauldron/hateful_memes/0"].meta["math"]


def test_subsets_and_limit_apply_to_every_adapter():
    tqa = read("cauldron", subsets=["tqa"])
    assert [s.id for s in tqa] == ["cauldron/tqa/0", "cauldron/tqa/1"]
    assert len(read("cauldron", limit=3)) == 3
    assert {s.subset for s in read("visual_cot", subsets=["docvqa"])} == {"docvqa"}
    assert {s.subset for s in read("tabmwp", subsets=["multi_choice"])} == {"multi_choice"}
    with pytest.raises(SourceError, match="not found"):
        read("cauldron", subsets=["no_such_subset"])


# --- TabMWP ---------------------------------------------------------------------------------------
def test_tabmwp_maps_problem_fields_and_native_splits(bundled):
    got = bundled["tabmwp"]
    seen = 0
    for name in ("problems_train.json", "problems_dev.json", "problems_test.json"):
        for pid, p in json.loads((SAMPLES / "tabmwp" / name).read_text()).items():
            seen += 1
            s = got[f"tabmwp/{p['ques_type']}/{pid}"]
            qa = s.qas[0]
            assert s.split == ("train" if p["split"] == "train" else "validation")
            assert qa.source_rationale == p["solution"] and qa.meta["math"] is True
            assert s.meta["table_for_pd"] == p["table_for_pd"] and s.meta["table"] == p["table"]
            assert qa.meta["ques_type"] == p["ques_type"] and qa.meta.get("unit") == p["unit"]
            assert qa.question.startswith(p["question"])
            assert Path(s.images[0].path).name == f"{pid}.png"
            if p["ques_type"] == "multi_choice":
                assert qa.choices == p["choices"]
                assert p["choices"]["ABCDEFGH".index(qa.answer)] == p["answer"] == qa.meta["answer_text"]
                for letter, choice in zip("ABCDEFGH", p["choices"]):
                    assert f"\n{letter}. {choice}" in qa.question
                assert qa.question.endswith(MULTIPLE_CHOICE_PROMPT)
            else:
                assert qa.answer == p["answer"] and qa.question.endswith(SHORT_ANSWER_PROMPT)
    assert seen == len(got) and {p for p in Counter(s.meta["native_split"] for s in got.values())} == {"train", "dev", "test"}


# --- InfoSeek -------------------------------------------------------------------------------------
def test_infoseek_maps_answers_eval_ranges_and_splits(bundled):
    got = bundled["infoseek"]
    id2image = {r["image_id"]: r["image_path"] for r in map(json.loads, (SAMPLES / "infoseek" / "id2image.jsonl").read_text().splitlines())}
    for name in ("infoseek_train.jsonl", "infoseek_val.jsonl"):
        for rec in map(json.loads, (SAMPLES / "infoseek" / name).read_text().splitlines()):
            s = got[f"infoseek/infoseek/{rec['data_id']}"]
            qa = s.qas[0]
            assert qa.answer == rec["answer"][0] and qa.meta["answer_eval"] == rec["answer_eval"]
            assert qa.question == rec["question"] + "\n" + SHORT_ANSWER_PROMPT
            assert s.split == ("train" if rec["data_split"] == "train" else "validation")
            assert Path(s.images[0].path).as_posix().endswith(id2image[rec["image_id"]])
    height = next(s for s in got.values() if "height of this rocket" in s.question)
    assert height.qas[0].meta["answer_range"] == [63.0, 77.0] and height.meta["math"] is True
    maker = next(s for s in got.values() if "company" in s.question)
    assert "Space Exploration Technologies Corp." in maker.qas[0].meta["answer_aliases"] and not maker.meta["math"]


def test_infoseek_corpus_answers_every_question_and_has_distractors(bundled):
    rows = [json.loads(x) for x in (SAMPLES / "infoseek" / "corpus" / "passages.jsonl").read_text().splitlines()]
    assert 30 <= len(rows) <= 60 and all(set(r) == {"id", "title", "text"} for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    corpus = " ".join(r["text"].replace(",", "") for r in rows)
    used = set()
    for s in bundled["infoseek"].values():
        answers = [s.answer] + s.qas[0].meta.get("answer_aliases", [])
        assert any(a.replace(",", "") in corpus for a in answers), s.id
        used |= {r["id"] for r in rows if any(a in r["text"].replace(",", "") for a in answers)}
    assert len(rows) - len(used) >= 10  # passages that answer nothing: distractors for retrieval


# --- Quarantine: one broken record per source, in a tmp copy ---------------------------------------
def _split_result(items):
    good = [x for x in items if isinstance(x, Sample)]
    bad = {x.sample_id: x for x in items if isinstance(x, Quarantined)}
    assert all(q.stage == "foundation" and q.reason for q in bad.values())
    return good, bad


def test_visual_cot_quarantines_missing_field_and_empty_image(tmp_path):
    root = copy_source("visual_cot", tmp_path)
    records = json.loads((root / "viscot_363k.json").read_text())
    del records[0]["conversations"]
    (root / "viscot_363k.json").write_text(json.dumps(records))
    (root / records[14]["image"][0]).write_bytes(b"")  # the dude invoice, used by record 14 only
    good, bad = _split_result(read("visual_cot", root))
    assert set(bad) == {"visual_cot/textvqa/0", "visual_cot/dude/0"}
    assert "missing field 'conversations'" in bad["visual_cot/textvqa/0"].reason
    assert "empty image" in bad["visual_cot/dude/0"].reason
    assert len(good) == len(records) - 2


def test_llava_cot_quarantines_bad_json_truncated_image_and_missing_conclusion(tmp_path):
    root = copy_source("llava_cot", tmp_path)
    lines = (root / "train.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    geo = next(r for r in recs if r["image"].startswith("geoqa+"))
    img = root / geo["image"]
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 3])
    chart = next(r for r in recs if len(r["conversations"]) == 4)
    chart["conversations"][3]["value"] = chart["conversations"][3]["value"].split("<CONCLUSION>")[0]
    lines = [json.dumps(r) for r in recs] + ['{"id": "broken", "image": ']
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    good, bad = _split_result(read("llava_cot", root))
    assert f"llava_cot/geoqa+/{geo['id']}" in bad and "unreadable image" in bad[f"llava_cot/geoqa+/{geo['id']}"].reason
    assert "CONCLUSION" in bad[f"llava_cot/chartqa/{chart['id']}"].reason  # the whole dialogue goes, not half
    assert any("not valid JSON" in q.reason for q in bad.values())
    assert len(bad) == 3 and len(good) == len(recs) - 2


def test_cauldron_quarantines_empty_image_bytes_and_missing_assistant(tmp_path):
    root = copy_source("cauldron", tmp_path)
    path = next((root / "st_vqa").glob("*.parquet"))
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["texts"][1]["assistant"] = None
    rows[1]["images"][0]["bytes"] = b""
    pq.write_table(table.from_pylist(rows, schema=table.schema), path)
    good, bad = _split_result(read("cauldron", root))
    assert set(bad) == {"cauldron/st_vqa/0", "cauldron/st_vqa/1"}
    assert "texts[1]: missing field 'assistant'" in bad["cauldron/st_vqa/0"].reason
    assert "empty image" in bad["cauldron/st_vqa/1"].reason
    assert len(good) == 18 - 2


def test_tabmwp_quarantines_missing_question_and_zero_byte_table(tmp_path):
    root = copy_source("tabmwp", tmp_path)
    train = json.loads((root / "problems_train.json").read_text())
    first, second = list(train)[:2]
    del train[first]["question"]
    (root / "problems_train.json").write_text(json.dumps(train))
    (root / "tables" / f"{second}.png").write_bytes(b"")
    good, bad = _split_result(read("tabmwp", root))
    assert set(bad) == {f"tabmwp/free_text/{first}", f"tabmwp/free_text/{second}"}
    assert "missing field 'question'" in bad[f"tabmwp/free_text/{first}"].reason
    assert bad[f"tabmwp/free_text/{second}"].error_type == "ImageDecodeError"
    assert len(good) == 12 - 2


def test_infoseek_quarantines_missing_answer_and_missing_image_file(tmp_path):
    root = copy_source("infoseek", tmp_path)
    recs = [json.loads(x) for x in (root / "infoseek_val.jsonl").read_text().splitlines()]
    del recs[0]["answer"]
    (root / "infoseek_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (root / "images" / "oven_04105867.jpg").unlink()  # the Hubble image, used by val record 1 only
    good, bad = _split_result(read("infoseek", root))
    assert set(bad) == {"infoseek/infoseek/infoseek_val_00000000", "infoseek/infoseek/infoseek_val_00000001"}
    assert "missing field 'answer'" in bad["infoseek/infoseek/infoseek_val_00000000"].reason
    assert "image file not found" in bad["infoseek/infoseek/infoseek_val_00000001"].reason
    assert len(good) == 13 - 2


# --- Config, whole-source errors, Hub ids offline ---------------------------------------------------
def test_source_config_rejects_unknown_fields_and_ambiguous_location():
    SourceConfig(kind="tabmwp", path="samples/tabmwp", limit=5, subsets=["free_text"])
    SourceConfig(kind="cauldron", hub_id="HuggingFaceM4/the_cauldron", hub_split="train", revision="main")
    for bad in ({"kind": "tabmwp", "path": "x", "colour": "red"},
                {"kind": "tabmwp"},
                {"kind": "tabmwp", "path": "x", "hub_id": "a/b"},
                {"kind": "tabmwp", "path": "x", "revision": "main"},
                {"kind": "scienceqa", "path": "x"},
                {"kind": "tabmwp", "path": "x", "limit": -1}):
        with pytest.raises(ValidationError):
            SourceConfig(**bad)


def test_missing_folder_is_one_clear_source_error(tmp_path):
    with pytest.raises(SourceError, match=r"source folder not found: .*set `path:`"):
        read("tabmwp", tmp_path / "nope")
    with pytest.raises(SourceError, match="problems_"):
        read("tabmwp", tmp_path)


@pytest.mark.parametrize("kind, hub_id", [("llava_cot", "Xkev/LLaVA-CoT-100k"),
                                          ("cauldron", "HuggingFaceM4/the_cauldron")])
def test_hub_id_offline_fails_with_one_line_naming_the_fix(kind, hub_id, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached copy to fall back on
    with pytest.raises(SourceError) as err:
        list(read_source(SourceConfig(kind=kind, hub_id=hub_id, subsets=["st_vqa"] if kind == "cauldron" else None)))
    msg = str(err.value)
    assert "\n" not in msg and hub_id in msg and "`path:`" in msg


# --- Response-style constraint ----------------------------------------------------------------------
def test_response_constraint_rules():
    assert add_response_constraint("What is shown?", "a cat") == "What is shown?\n" + SHORT_ANSWER_PROMPT
    assert add_response_constraint("Q?\nA. x\nB. y", "A", ["x", "y"]) == "Q?\nA. x\nB. y\n" + MULTIPLE_CHOICE_PROMPT
    long = "It is a tabby cat sitting on a sofa next to a window."
    assert add_response_constraint("What is shown?", long) == "What is shown?"
    assert add_response_constraint("Describe the image.", "a cat") == "Describe the image."  # open-ended request
    once = add_response_constraint("What is shown?", "a cat")
    assert add_response_constraint(once, "a cat") == once  # idempotent
    assert add_response_constraint("Q?\nA. x\nB. y\nAnswer with the letter.", "B", ["x", "y"]).endswith(
        "B. y\n" + MULTIPLE_CHOICE_PROMPT)
    assert add_response_constraint("What color?\nAnswer briefly.", "red") == "What color?\n" + SHORT_ANSWER_PROMPT


def test_numeric_answers_and_listed_choices():
    assert all(map(is_numeric, ["42", "1,200", "18.60", "$3.50", "68%", "70°", "3/4", "-5"]))
    assert not any(map(is_numeric, ["2.4 million", "INV-20417", "555-0142", "yes", ""]))
    assert parse_listed_choices("Q\nContext: N/A\nOptions: (A) Seattle (B) Juneau (C) Saint Paul") == ["Seattle", "Juneau", "Saint Paul"]
    assert parse_listed_choices("Q\nChoices:\nA:60°\nB:70°") == ["60°", "70°"]
    assert parse_listed_choices("A. single stray line") == []


def test_instruction_matching_equals_trying_every_phrase():
    """`strip_suffixes`, `ends_with` and `starts_with` try only the phrases whose edge word the question
    has (`_candidates`); they must answer exactly as trying every phrase's pattern in order does, on
    questions made of every phrase: other case, other whitespace (Unicode spaces included), repeated,
    glued to a word, cut short, and with non-ASCII letters that `re.I` folds onto ASCII ones (the
    Kelvin sign onto k, the long s onto s)."""
    from generation.sources import instructions as ins

    def every_phrase_strip(question, phrases):
        q = question.rstrip()
        while True:
            for phrase in phrases:
                match = ins._phrase(phrase, "end").search(q)
                if match and q[: match.start()].strip():
                    q = q[: match.start()].rstrip()
                    break
            else:
                return q

    def every_phrase(question, phrases, where):
        return any(ins._phrase(p, where).search(question) for p in phrases)

    groups = [ins.BREVITY_SUFFIXES, ins.LETTER_SUFFIXES + ins.BREVITY_SUFFIXES, ins.YES_NO_INSTRUCTIONS,
              ins.LEADING_INSTRUCTIONS]
    phrases = sorted({p for g in groups for p in g})
    bodies = ["What is shown?", "Q?\nA. x\nB. y", "", "brief.", "Is it red"]
    variants = []
    for p in phrases:
        words = p.split()
        variants += [p, p.upper(), p.lower(), "\u00a0".join(words), "\u3000 ".join(words) + " \n",
                     "x" + p, p + "x", " ".join(words[:-1]), " ".join(words[1:]),
                     p.replace("k", "\u212a").replace("K", "\u212a"), p.replace("s", "\u017f")]
    questions = [f"{b}\n{v}" for b in bodies for v in variants] + [f"{v} {b}" for b in bodies for v in variants]
    questions += [f"What?\n{a}\n{b}" for a in ins.BREVITY_SUFFIXES[:6] for b in ins.BREVITY_SUFFIXES[:6]]
    questions += ["", "   ", "\u212a", "Answer"]
    matched = 0
    for q in questions:
        for g in groups:
            assert ins.strip_suffixes(q, g) == every_phrase_strip(q, g), (q, g[0])
            for where in ("end", "start"):
                expected = every_phrase(q, g, where)
                assert (ins.ends_with if where == "end" else ins.starts_with)(q, g) == expected, (q, where)
                matched += expected
    assert matched > 1000  # the questions do hit the phrases (and the Kelvin-sign ones among them)
    assert ins.ends_with("Keep it bri\u212a", ("Keep it brik",))  # the Kelvin sign is a k to `re.I`
