"""`mmat audit` over a folder of hand-made dialogues, one per kind the audit reports (grounded, not
grounded, leaked, repaired, not verified, exact and near duplicates), rendered into rows by the engine's
own integration stage and written as parquet shards; the card's Quality section built from the same
audit; `teacher.require_grounding` end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pyarrow.parquet as pq
import pytest

from generation.integration import build_rows
from generation.schema import QA, ImageRef, Observation, QATrajectory, Reflection, Sample, Step, Trajectory
from mmat_1m import FEATURES, shard_dir, shard_name
from tests.dataset_factory import png_bytes

CUP = "What is the cup sitting on? Answer the question using a single word or phrase."
MENU = ("Soup of the day: tomato basil with fresh bread, served until three in the afternoon. Grilled cheese "
        "sandwich with pickles and a side salad. Chicken noodle bowl with ginger broth and spring onions. "
        "Lemon cake with whipped cream and berries. Coffee, tea and fresh orange juice at the counter. Breakfast "
        "is served from seven until eleven every morning, with pancakes, scrambled eggs, toast and jam, porridge "
        "with honey and apple, and a full plate with beans, mushrooms and grilled tomatoes. Ask our staff about "
        "gluten free bread, vegan cheese and oat milk. Tables on the terrace open when the weather is warm.")
MENU_Q = "What is the soup of the day?"
SOUP = 'The ocr result says "Soup of the day: tomato basil with fresh bread". So the answer is tomato basil.'


def dialogue(row_id: str, question: str, answer: str, steps: list[Step], final: str, *, image: int = 1,
             reflection: Reflection = Reflection(), math: bool = False) -> tuple[Sample, Trajectory, list[bytes]]:
    source, subset, _ = row_id.split("/")
    sample = Sample(id=row_id, source=source, subset=subset, split="train", images=[ImageRef(data=png_bytes(image))],
                    qas=[QA(question=question, answer=answer, meta={"math": math})], meta={"math": math})
    from generation.quality.definitions import judge_question
    from generation.verify import answers_match

    qa = QATrajectory(question=question, reference_answer=answer, steps=steps, final_answer=final,
                      reflection=reflection, verified=answers_match(final, sample.qas[0]),
                      grounded=judge_question(question, steps, final)[0].grounded)
    return sample, Trajectory(sample_id=row_id, qas=[qa], operators_available=["image_caption", "ocr"]), [png_bytes(image)]


def look(tool: str, text: str, thought: str = "I will look at the image.") -> Step:
    return Step(thought=thought, operators=[tool], observations=[Observation(operator=tool, text=text, backend="test")])


SAUCER = look("image_caption", "a white cup on a small saucer")
LANDSCAPE = look("image_caption", "A 384x256 landscape photograph-like image, mostly orange and red, bright")


def hand_made() -> list[tuple[Sample, Trajectory, list[bytes]]]:
    conclude = Step(thought='The image_caption result says "a white cup on a small saucer". So the answer is saucer.',
                    signal="end")
    return [
        # grounded, verified, clean
        dialogue("visual_cot/gqa/good", CUP, "saucer", [SAUCER, conclude], "saucer"),
        # the example: the evidence says nothing about a saucer
        dialogue("visual_cot/gqa/ungrounded", CUP, "saucer",
                 [LANDSCAPE, Step(thought="The region that answers it is around [40, 92, 330, 252].", signal="end")],
                 "saucer", image=2),
        # leaked: the first step names the total before reading the table
        dialogue("tabmwp/tabmwp/leaked", "How many visitors came in all?", "97",
                 [look("ocr", "Monday | 45\nTuesday | 52", "There were 97 visitors; I will read the table."),
                  Step(thought="45 + 52 = 97. So the answer is 97.", signal="end")], "97", image=3, math=True),
        # the same defect, repaired by a staged general reflection: not leaked
        dialogue("tabmwp/tabmwp/repaired", "How many visitors came in all?", "97",
                 [look("ocr", "Monday | 45\nTuesday | 52", "There were 97 visitors; I will read the table."),
                  Step(thought="Wait, I named the answer before reading the table.", signal="reflection"),
                  Step(thought="45 + 52 = 97. So the answer is 97.", signal="end")], "97", image=4, math=True,
                 reflection=Reflection(kind="general", reason="named the answer early", origin="staged")),
        # not verified: the final answer differs from the reference
        dialogue("infoseek/infoseek/wrong", MENU_Q, "tomato basil",
                 [look("ocr", MENU), Step(thought="The menu lists a chicken noodle bowl. So the answer is chicken "
                                                  "noodle.", signal="end")], "chicken noodle", image=5),
        # exact duplicate of "good": same text, same image
        dialogue("visual_cot/gqa/copy", CUP, "saucer", [SAUCER, conclude], "saucer"),
        # near duplicates: the same long dialogue, one word of the menu changed, another image
        dialogue("infoseek/infoseek/menu1", MENU_Q, "tomato basil",
                 [look("ocr", MENU), Step(thought=SOUP, signal="end")], "tomato basil", image=6),
        dialogue("infoseek/infoseek/menu2", MENU_Q, "tomato basil",
                 [look("ocr", MENU.replace("Lemon", "Carrot")), Step(thought=SOUP, signal="end")], "tomato basil",
                 image=7),
    ]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit") / "mmat-1m"
    by_shard: dict[tuple[str, str], list[dict]] = {}
    for sample, trajectory, images in hand_made():
        rows = build_rows(sample, trajectory, images)
        for fmt in ("rr", "orr"):
            by_shard.setdefault((fmt, sample.source), []).append(rows[fmt])
    for (fmt, source), rows in by_shard.items():
        out = root / shard_dir(fmt, source)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(datasets.Dataset.from_list(rows, features=FEATURES).data.table, out / shard_name("train", 0, 1))
    return root


@pytest.fixture(scope="module")
def report(folder):
    from generation.quality.audit import audit_dataset

    return audit_dataset(folder, "rr")


def test_each_kind_is_counted_per_source_and_in_total(report):
    total = report.total
    assert total.dialogues == 8
    assert (total.verified, total.verified_known) == (7, 8)
    assert total.grounded == 7  # all but "ungrounded"
    assert total.leaked == 1 and total.leaks_repaired == 1
    assert report.groups["visual_cot"].grounded == 2 and report.groups["visual_cot"].dialogues == 3
    assert report.groups["tabmwp"].leaked == 1 and report.groups["tabmwp/tabmwp"].dialogues == 2
    assert report.groups["infoseek"].verified == 2
    assert total.reflections == {"general/staged": 1}
    assert (total.math_dialogues, total.math_reflected) == (2, 0)
    assert total.operator_calls == {"image_caption": 3, "ocr": 5}


def test_failing_kinds_name_their_examples(report):
    ids = {kind: [item["id"] for item in items] for kind, items in report.examples.items() if items}
    assert ids["not_grounded"] == ["visual_cot/gqa/ungrounded"]
    assert ids["leaked"] == ["tabmwp/tabmwp/leaked"]
    assert "states the answer '97' before any evidence" in report.examples["leaked"][0]["why"]
    assert ids["not_verified"] == ["infoseek/infoseek/wrong"]
    assert report.exact_duplicates == 1 and ids["exact_duplicate"] == ["visual_cot/gqa/copy"]
    assert report.near_duplicates == 1 and ids["near_duplicate"] == ["infoseek/infoseek/menu2"]


def test_lengths_and_the_orr_rr_token_ratio(report):
    total = report.total
    assert total.per_dialogue("images") == 1.0 and total.per_dialogue("turns") > total.per_dialogue("steps") - 1
    assert 0 < report.token_ratio < 1  # ORR drops the per-step turns


def test_mmat_audit_prints_the_table_and_writes_json(folder, tmp_path):
    out = tmp_path / "audit.json"
    result = subprocess.run([sys.executable, "-m", "mmat_cli", "audit", str(folder), "--json", str(out)],
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    assert "visual_cot/gqa/ungrounded" in result.stdout and "total" in result.stdout
    data = json.loads(out.read_text())
    assert data["total"]["grounded"] == pytest.approx(7 / 8) and data["total"]["leaked"] == pytest.approx(1 / 8)
    assert data["sources"]["tabmwp"]["counts"]["leaks_repaired"] == 1
    assert data["exact_duplicates"] == 1 and data["near_duplicates"] == 1
    missing = subprocess.run([sys.executable, "-m", "mmat_cli", "audit", str(tmp_path / "nothing")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_the_card_has_a_quality_section_with_table_figure_and_ids(folder):
    from huggingface_hub import DatasetCard
    from PIL import Image

    from publishing.card import QUALITY_FIGURE_PATH, write_card

    card_path = write_card(folder)
    text = card_path.read_text()
    section = text.split("## Quality", 1)[1].split("\n## ", 1)[0]
    assert ("| source | dialogues | verified | grounded (tool) | grounded (source rationale) | admits no evidence "
            "| leaked |") in section
    assert "| total | 8 | 0.88 (7/8) | 0.88 (7/8) | 0.00 (0/8) | 0.00 (0/8) | 0.12 (1/8) |" in section
    assert "RR and ORR side by side" in section
    # RR / ORR per measure: the hand-made TabMWP leak is in RR only (ORR compresses the repaired trajectory)
    assert "| tabmwp | 2 / 2 | 2 / 2 | 0 / 0 | 0 / 0 | 1 / 0 | 0 | 0 |" in section
    assert "Repairs: **1** accepted" in section
    assert r"visual\_cot/gqa/ungrounded" in section and r"tabmwp/tabmwp/leaked" in section  # ids as Markdown text
    assert f"]({QUALITY_FIGURE_PATH})" in section
    with Image.open(folder / QUALITY_FIGURE_PATH) as figure:
        assert figure.format == "PNG" and figure.size[0] > 300
    loaded = DatasetCard.load(card_path)  # the card round-trips through huggingface_hub
    assert "## Quality" in loaded.text and loaded.data.configs


def test_the_orr_rows_are_audited_from_their_api_outputs(folder):
    from generation.quality.audit import audit_dataset

    orr = audit_dataset(folder, "orr")
    assert orr.config == "orr" and orr.total.dialogues == 8
    assert orr.total.grounded == 7 and orr.total.verified == 7  # the API outputs block is the evidence
    # ORR tokens over RR tokens, whichever format is audited
    assert orr.exact_duplicates == 1 and orr.token_ratio == pytest.approx(audit_dataset(folder, "rr").token_ratio)


def test_the_terminal_report_is_readable_at_80_columns(report):
    """Every header and the total's rates stay whole on a default terminal (one wide table folded them)."""
    from rich.console import Console

    from generation.quality.report import COLUMNS, print_report

    console = Console(width=80, record=True, color_system=None)
    print_report(report, console)
    text = console.export_text()
    table_lines = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and all(len(line) <= 80 for line in table_lines)
    for header in ("verified", "grounded", "leaked", "steps", "turns", "tokens", "images"):
        assert f" {header} " in text, header
    total = next(line for line in text.splitlines() if line.startswith("│ total "))
    assert "0.88 (7/8)" in total and "0.12 (1/8)" in total
    assert len(COLUMNS) > 5  # the second table carries the rest


def _write(root, fmt, source, rows, name=None):
    out = root / shard_dir(fmt, source)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(datasets.Dataset.from_list(rows, features=FEATURES).data.table, out / (name or shard_name("train", 0, 1)))


def _audit_two_shards(tmp_path, made, first: int):
    """The RR rows of the dialogues `made`, written as two infoseek shards (`first` rows in the first), audited."""
    from generation.quality.audit import audit_dataset

    rows = [build_rows(s, t, i)["rr"] for s, t, i in made]
    root = tmp_path / "mmat-1m"
    _write(root, "rr", "infoseek", rows[:first], shard_name("train", 0, 2))
    _write(root, "rr", "infoseek", rows[first:], shard_name("train", 1, 2))
    return audit_dataset(root, "rr")


def test_duplicates_past_the_first_batch_and_shard_are_named_by_their_own_ids(tmp_path):
    """The audit keeps where rows are, not their ids: a copy read in a later batch of a later shard is
    named by its own id and its original's (hand-made: 300 distinct dialogues in two shards of 40 and
    262 rows, with the copy of dialogue 10 at row 258 of the second, past its first batch of 256, and
    a near-duplicate of dialogue 20, another image and one word changed, at its row 260)."""
    menu_step = Step(thought=SOUP, signal="end")

    def one(k, row_id=None, changed=None, image=None):
        words = [f"dish{k}n{j}" for j in range(80)]  # a text of its own per dialogue
        if changed is not None:
            words[changed] = "carrot"
        return dialogue(row_id or f"infoseek/infoseek/d{k:03d}", MENU_Q, "tomato basil",
                        [look("ocr", " ".join(words)), menu_step], "tomato basil", image=k if image is None else image)

    made = [one(k) for k in range(300)]
    made.insert(298, one(10, "infoseek/infoseek/copy10"))
    made.insert(300, one(20, "infoseek/infoseek/near20", changed=40, image=999))
    report = _audit_two_shards(tmp_path, made, 40)
    assert report.total.dialogues == 302
    assert report.exact_duplicates == 1
    assert report.examples["exact_duplicate"] == [{"id": "infoseek/infoseek/copy10",
                                                   "why": "same as infoseek/infoseek/d010"}]
    assert report.near_duplicates == 1
    assert report.examples["near_duplicate"] == [{"id": "infoseek/infoseek/near20",
                                                  "why": "near-duplicate of infoseek/infoseek/d020"}]


def test_the_token_ratio_is_orr_over_rr_tokens_of_the_dialogues_in_both(folder, tmp_path):
    """By hand: text tokens (words and punctuation marks) of every message, summed over the ids both
    formats have; an RR row without its ORR row counts in neither sum."""
    import re
    import shutil

    from generation.quality.audit import audit_dataset

    root = tmp_path / "mmat-1m"
    shutil.copytree(folder, root)
    orr_menu = root / shard_dir("orr", "infoseek") / shard_name("train", 0, 1)
    table = pq.read_table(orr_menu)
    pq.write_table(table.slice(0, table.num_rows - 1), orr_menu)  # menu2 has no ORR row now

    def tokens(fmt):
        out = {}
        for path in sorted((root / "data" / fmt).rglob("*.parquet")):
            for row in pq.read_table(path, columns=["id", "messages"]).to_pylist():
                texts = [b["text"] or "" for m in row["messages"] for b in m["content"] if b["type"] == "text"]
                out[row["id"]] = sum(len(re.findall(r"\w+|[^\w\s]", t, re.ASCII)) for t in texts)
        return out

    rr, orr = tokens("rr"), tokens("orr")
    both = [i for i in rr if i in orr]
    assert len(both) == 7 and "infoseek/infoseek/menu2" not in both
    expected = sum(orr[i] for i in both) / sum(rr[i] for i in both)
    assert audit_dataset(root, "rr").token_ratio == pytest.approx(expected, rel=1e-12)
    assert audit_dataset(root, "orr").token_ratio == pytest.approx(expected, rel=1e-12)


def test_one_text_repeated_hundreds_of_times_is_a_duplicate_only_with_the_same_images(tmp_path):
    """Templated replies repeat a text many times: 330 rows of one text over two shards (several batches
    of image reads in each), cycling over 3 images, are 3 originals and 327 exact duplicates; each copy is named
    with the first row that has its image."""
    made = [dialogue(f"infoseek/infoseek/t{k:03d}", MENU_Q, "tomato basil",
                     [look("ocr", MENU), Step(thought=SOUP, signal="end")], "tomato basil", image=k % 3)
            for k in range(330)]
    report = _audit_two_shards(tmp_path, made, 70)
    assert report.total.dialogues == 330
    assert report.exact_duplicates == 327
    assert report.examples["exact_duplicate"][:3] == [
        {"id": "infoseek/infoseek/t003", "why": "same as infoseek/infoseek/t000"},
        {"id": "infoseek/infoseek/t004", "why": "same as infoseek/infoseek/t001"},
        {"id": "infoseek/infoseek/t005", "why": "same as infoseek/infoseek/t002"}]


def test_image_digests_hash_the_joined_bytes_of_each_rows_images_in_place():
    """The exact-duplicate key of a row's images, read from the Arrow buffers, is the digest of its image
    bytes joined by NUL, as `b"\\x00".join(...)` over the rows as Python values gives it: for no image, a
    null list, a null image, null bytes, several images, and a sliced and a chunked column."""
    import pyarrow as pa
    import xxhash

    from generation.quality.audit import _image_digests

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    values = [[{"bytes": b"png-one", "path": None}], [], None, [None], [{"bytes": None, "path": "a.png"}],
              [{"bytes": b"two", "path": None}, {"bytes": b"three", "path": "x"}, None],
              [{"bytes": b"", "path": None}, {"bytes": b"\x00", "path": None}], [{"bytes": b"png-one", "path": "y"}]]
    column = pa.array(values, type=pa.list_(image))

    def expected(rows):
        return [xxhash.xxh3_128_digest(b"\x00".join((im or {}).get("bytes") or b"" for im in row or []))
                for row in rows]

    assert _image_digests(column, xxhash) == expected(values)
    assert _image_digests(column.slice(3, 4), xxhash) == expected(values[3:7])
    chunked = pa.chunked_array([column.slice(0, 5), column.slice(5)])
    assert _image_digests(chunked, xxhash) == expected(values)
    large = pa.array(values, type=pa.list_(pa.struct([("bytes", pa.large_binary()), ("path", pa.string())])))
    assert _image_digests(large, xxhash) == expected(values)
    digests = _image_digests(column, xxhash)
    # the same bytes under another path are the same image; no image, a null one and empty bytes are alike
    assert digests[0] == digests[7] and len(set(digests)) == 4
