"""`mmat view` without a browser: reading a row's dialogue back, lazy paging, filters, the work folder's
quarantine records and operator backends, a Hub repo at a revision, and the command's one-line errors.

Rows come from the engine's own integration stage (`generation.integration.build_rows`) and writer
(`generation.writer.write_group`); expected ids are computed straight from the parquet files.
"""
from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.integration import build_rows, orr_api_outputs, orr_thought, orr_thoughts, rr_system_prompt
from generation.schema import QA, ImageRef, Observation, QATrajectory, Reflection, Sample, Step, TeacherUsage, Trajectory
from generation.writer import WriterSettings, write_group
from mmat_1m import FORMATS
from tests.browser import start_view
from tests.dataset_factory import make_dialogue, png_bytes
from viewer.app import ViewerApp
from viewer.filters import Filter, FilterError
from viewer.parsed import parse_row
from viewer.store import ShardStore, ViewerError
from viewer.view import dialogue_view
from viewer.workfolder import WorkFolder

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ rows
def _trajectory() -> tuple[Sample, Trajectory]:
    q1 = QATrajectory(
        question="What does the sign say? Answer the question using a single word or phrase.",
        reference_answer="STOP",
        steps=[
            Step(thought="I need to read the sign.", operators=["ocr"], signal="continue",
                 observations=[Observation(operator="ocr", text="STOP")]),
            Step(thought="Where are such signs used?", rag_query="octagonal sign", signal="continue",
                 observations=[Observation(operator="rag", text="[1] Stop sign: a red octagon.")]),
            Step(thought="Nothing else is needed.", signal="continue"),
            Step(thought="I used the answer before reading.", signal="reflection"),
            Step(thought="The OCR result reads STOP.", signal="end"),
        ],
        final_answer="STOP", reflection=Reflection(kind="general", reason="I used the answer before reading."),
        verified=True,
    )
    q2 = QATrajectory(question="What colour is it?", reference_answer="red",
                      steps=[Step(thought="Stop signs are red.", signal="end")], final_answer="red", verified=True)
    sample = Sample(id="cauldron/st_vqa/1", source="cauldron", subset="st_vqa", images=[ImageRef(data=png_bytes(1))],
                    qas=[QA(question=q1.question, answer="STOP"), QA(question=q2.question, answer="red")])
    trajectory = Trajectory(sample_id=sample.id, qas=[q1, q2], operators_available=["ocr", "rag"],
                            usage=TeacherUsage(model="m", prompt_tokens=10, completion_tokens=5, latency_s=0.5,
                                               cost_usd=0.01))
    return sample, trajectory


def _steps(qa: QATrajectory) -> list[tuple]:
    return [(s.thought, tuple(s.operators), s.rag_query, s.signal, tuple((o.operator, o.text) for o in s.observations))
            for s in qa.steps]


def _parsed_steps(question) -> list[tuple]:
    return [(s.thought, s.operators, s.rag_query, s.signal, s.observations) for s in question.steps]


def test_the_rr_dialogue_reads_back_what_the_engine_wrote():
    sample, trajectory = _trajectory()
    row = build_rows(sample, trajectory, [png_bytes(1)])["rr"]
    dialogue = parse_row(row)
    assert dialogue.system == rr_system_prompt()
    assert len(dialogue.questions) == 2
    for question, qa in zip(dialogue.questions, trajectory.qas):
        assert question.question.startswith(qa.question)
        assert question.answer == qa.final_answer
        assert _parsed_steps(question) == _steps(qa)
    assert [q.n_images for q in dialogue.questions] == [1, 0]


def test_the_orr_dialogue_reads_back_what_the_engine_wrote():
    sample, trajectory = _trajectory()
    row = build_rows(sample, trajectory, [png_bytes(1)])["orr"]
    dialogue = parse_row(row)
    assert [q.question for q in dialogue.questions] == [qa.question for qa in trajectory.qas]
    assert [q.answer for q in dialogue.questions] == ["STOP", "red"]
    assert list(dialogue.questions[0].api_outputs) == orr_api_outputs(trajectory)
    assert dialogue.questions[1].api_outputs == ()
    assert [q.thought for q in dialogue.questions] == orr_thoughts(trajectory)
    assert dialogue.questions[0].thought == orr_thought(trajectory.qas[0], api_outputs=orr_api_outputs(trajectory))


def test_the_view_labels_steps_results_reflection_and_the_answer():
    sample, trajectory = _trajectory()
    row = build_rows(sample, trajectory, [png_bytes(1)])["rr"]
    backends = {("ocr", "STOP"): "rapidocr", ("rag", "[1] Stop sign: a red octagon."): "local"}
    view = dialogue_view(row, "train", backend_of=lambda op, text: backends.get((op, text)),
                         image_url=lambda i, size: f"/img/{i}/{size}")
    kinds = [(t["kind"], t.get("mark") or t.get("note")) for t in view["turns"]]
    assert kinds == [
        ("question", None), ("step", None), ("results", None), ("step", None), ("results", None),
        ("step", None), ("note", "no_results"), ("step", "reflection"), ("note", "reflection_request"),
        ("step", "repaired"), ("note", "summary_request"), ("answer", None),
        ("question", None), ("step", None), ("note", "summary_request"), ("answer", None),
    ]
    first_step = view["turns"][1]["blocks"]
    assert first_step == [{"label": "THOUGHT", "text": "I need to read the sign."},
                          {"label": "OPERATOR", "items": ["ocr"]}, {"label": "SIGNAL", "text": "continue"}]
    assert {"label": "RAG", "text": "octagonal sign"} in view["turns"][3]["blocks"]
    assert view["turns"][2]["cards"] == [{"operator": "ocr", "backend": "rapidocr", "text": "STOP"}]
    assert view["turns"][4]["cards"][0]["backend"] == "local"
    answer = view["turns"][11]
    assert (answer["answer"], answer["reference"], answer["verified"]) == ("STOP", "STOP", True)
    assert view["turns"][15]["reference"] is None  # the row keeps the first question's reference only
    assert view["images"] == [{"thumb": "/img/0/thumb", "full": "/img/0/full"}]
    assert view["teacher"]["model"] == "m" and view["teacher"]["cost_usd"] == 0.01


def test_a_row_whose_messages_do_not_match_its_steps_is_shown_message_by_message():
    sample, trajectory = _trajectory()
    row = build_rows(sample, trajectory, [png_bytes(1)])["rr"]
    row["messages"] = row["messages"][:-3]
    view = dialogue_view(row, "train")
    assert view["layout_error"]
    assert [t["kind"] for t in view["turns"]] == ["raw"] * len(row["messages"])
    assert view["turns"][1]["text"].startswith("What does the sign say?")


# ------------------------------------------------------------------------------------ a dataset
SOURCES = ("visual_cot", "cauldron", "tabmwp", "infoseek")
TRAIN_ROWS = 600  # shards of ~0.5 MB: much larger than a footer read


def _judged(dialogue: dict, index: int) -> dict:
    """InfoSeek rows get judge scores 0, 0.25, ..., 1; every seventh row failed verification, every eleventh
    was not checked."""
    for row in dialogue.values():
        row["meta"] = {**row["meta"], "judge_score": (index % 5) / 4 if row["source"] == "infoseek" else None,
                       "verified": None if index % 11 == 10 else index % 7 != 6}
    return dialogue


def write_dataset(root: Path, n_train: int = TRAIN_ROWS, row_group_rows: int = 16) -> Path:
    """A dataset folder written by the engine's shard writer: small row groups, both formats."""
    settings = WriterSettings(row_group_rows=row_group_rows)
    for source in SOURCES:
        for split, n in (("train", n_train), ("validation", n_train // 4)):
            dialogues = [_judged(make_dialogue(source, split, i), i) for i in range(n)]
            for fmt in FORMATS:
                write_group(root, fmt, source, split, [d[fmt] for d in dialogues], settings)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("viewer") / "mmat-1m")


def _all_rows(folder: Path, fmt: str) -> list[dict]:
    """Every row of a format, in the viewer's list order (source order, split, file), straight from parquet."""
    rows = []
    for source in SOURCES:
        for split in ("train", "validation"):
            for path in sorted((folder / "data" / fmt / source).glob(f"{split}-*.parquet")):
                table = pq.read_table(path, columns=["id", "source", "subset", "question", "answer", "reflection",
                                                     "meta", "steps"])
                rows.extend({**r, "split": split} for r in table.to_pylist())
    return rows


class CountingFile(io.RawIOBase):
    """A file that counts the bytes pyarrow reads from it."""

    def __init__(self, path: str, counter: list[int]) -> None:
        self._fh = open(path, "rb")
        self._counter = counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        self._counter[0] += n or 0
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_opening_reads_nothing_and_a_page_reads_only_its_footers_and_row_groups(dataset):
    read = [0]
    store = ShardStore.from_folder(dataset, opener=lambda p: pa.PythonFile(CountingFile(p, read), mode="r"))
    assert read[0] == 0  # opening lists the files
    start = TRAIN_ROWS + TRAIN_ROWS // 4 - 4  # the page crosses from visual_cot's validation shard into cauldron's
    page = store.page("rr", Filter(), offset=start, limit=10)
    assert [r[2]["id"] for r in page.rows] == [r["id"] for r in _all_rows(dataset, "rr")[start:start + 10]]
    assert page.total is None  # counting would read every footer
    rr = dataset / "data" / "rr"
    touched = [rr / "visual_cot/train-00000-of-00001.parquet", rr / "visual_cot/validation-00000-of-00001.parquet",
               rr / "cauldron/train-00000-of-00001.parquet"]
    # the three footers (pyarrow reads each with at most one speculative 64 KiB read), then one row group of
    # 16 rows in each of two shards, list columns only (no images, no messages)
    footers = sum(pq.read_metadata(p).serialized_size + 8 + 64 * 1024 for p in touched)
    total_bytes = sum(p.stat().st_size for p in dataset.rglob("*.parquet"))
    assert read[0] - footers < total_bytes / 100
    assert store.total("rr") == sum(pq.read_metadata(p).num_rows for p in rr.rglob("*.parquet"))


CASES = [
    ({}, lambda r: True),
    ({"source": "tabmwp", "reflection": "math"}, lambda r: r["source"] == "tabmwp" and r["reflection"]["kind"] == "math"),
    ({"subset": "iconqa"}, lambda r: r["subset"] == "iconqa"),
    ({"split": "validation"}, lambda r: r["split"] == "validation"),
    ({"operator": "rag"}, lambda r: any(s["rag_query"] for s in r["steps"])),
    ({"operator": "ocr", "reflection": "general"},
     lambda r: any("ocr" in s["operators"] for s in r["steps"]) and r["reflection"]["kind"] == "general"),
    ({"verified": "yes"}, lambda r: r["meta"]["verified"] is True),
    ({"verified": "no"}, lambda r: r["meta"]["verified"] is False),
    ({"verified": "no", "source": "cauldron", "split": "train"},
     lambda r: r["meta"]["verified"] is False and r["source"] == "cauldron" and r["split"] == "train"),
    ({"score_min": "0.5", "score_max": "0.75"}, lambda r: r["meta"]["judge_score"] is not None
     and 0.5 <= r["meta"]["judge_score"] <= 0.75),
    ({"score_max": "0"}, lambda r: r["meta"]["judge_score"] == 0),
    ({"text": "REGION 2 OF ICONQA"}, lambda r: "region 2 of iconqa" in (r["id"] + r["question"] + r["answer"]).lower()),
    ({"text": "answer7-0"}, lambda r: "answer7-0" in r["answer"]),
    ({"score_min": "0.5", "source": "tabmwp"}, lambda r: False),  # no judge score: in no range
    ({"verified": "unknown"}, lambda r: r["meta"]["verified"] is None),
]


@pytest.mark.parametrize("params,keep", CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_filters_show_exactly_the_matching_rows(dataset, params, keep):
    app = ViewerApp(ShardStore.from_folder(dataset), "rr", WorkFolder(None))
    expected = [r["id"] for r in _all_rows(dataset, "rr") if keep(r)]
    got = []
    offset = 0
    assert app.count(params)["total"] == len(expected)
    while True:
        page = app.rows({**params, "offset": str(offset), "limit": "37"})
        assert page["total"] in (None, len(expected))
        got += [r["id"] for r in page["rows"]]
        offset += 37
        if offset >= len(expected):
            break
    assert got == expected


def test_bad_filter_values_are_one_clear_error(dataset):
    app = ViewerApp(ShardStore.from_folder(dataset), "rr", WorkFolder(None))
    with pytest.raises(FilterError, match="score_min must be a number"):
        app.rows({"score_min": "high"})
    with pytest.raises(FilterError, match="verified must be one of"):
        Filter.from_query({"verified": "maybe"})


def test_a_dialogue_is_found_by_id_in_either_format(dataset):
    app = ViewerApp(ShardStore.from_folder(dataset), "rr", WorkFolder(None))
    expected = make_dialogue("cauldron", "validation", 3)
    for fmt in FORMATS:
        view = app.dialogue(fmt, expected[fmt]["id"])
        assert view["format"] == fmt and view["split"] == "validation"
        assert view["question"] == expected[fmt]["question"]
        body, mime = app.image(dict(p.split("=") for p in view["images"][1]["full"].split("?")[1].split("&")))
        assert body == expected[fmt]["images"][1]["bytes"] and mime == "image/png"
    with pytest.raises(ViewerError, match="no rr row with id"):
        app.dialogue("rr", "cauldron/st_vqa/nope")


def test_quarantine_records_come_from_every_worker_and_skip_samples_that_finished(dataset, tmp_path):
    work = tmp_path / "work"
    with Checkpoint(work) as first, Checkpoint(work, "00001-of-00002") as second:
        first.quarantine(QuarantineRecord("tabmwp/free_text/9", "foundation", "ImageDecodeError",
                                          "cannot identify image file", "tabmwp"))
        second.quarantine(QuarantineRecord("infoseek/infoseek/x", "rationale", "TeacherError", "no JSON in reply",
                                           "infoseek"))
        # quarantined once, then finished on retry: it has a row, so it is not listed
        finished = make_dialogue("tabmwp", "train", 0)["rr"]["id"]
        first.quarantine(QuarantineRecord(finished, "rationale", "TeacherError", "timeout", "tabmwp"))
    app = ViewerApp(ShardStore.from_folder(dataset), "rr", WorkFolder(work))
    listed = app.rows({"quarantined": "1"})
    assert listed["quarantined"] is True
    assert [(r["id"], r["stage"], r["message"]) for r in listed["rows"]] == [
        ("infoseek/infoseek/x", "rationale", "no JSON in reply"),
        ("tabmwp/free_text/9", "foundation", "cannot identify image file")]
    assert [r["id"] for r in app.rows({"quarantined": "1", "source": "tabmwp"})["rows"]] == ["tabmwp/free_text/9"]
    assert [r["id"] for r in app.rows({"quarantined": "1", "text": "teachererror"})["rows"]] == ["infoseek/infoseek/x"]
    assert app.facets()["quarantined"] == 2


def test_operator_backends_come_from_the_runs_operator_cache(tmp_path):
    from operators.base import OperatorResult
    from operators.cache import OperatorCache

    cache = OperatorCache(tmp_path / "work" / "operator-cache" / "results")
    cache.put("a" * 64, OperatorResult(operator="ocr", text="STOP", backend="rapidocr", version="1"))
    cache.put("b" * 64, OperatorResult(operator="image_caption", text="A red sign.", backend="template", version="1"))
    work = WorkFolder(tmp_path / "work")
    assert work.backend_of("ocr", "STOP") == "rapidocr"
    assert work.backend_of("image_caption", "A red sign.") == "template"
    assert work.backend_of("ocr", "GO") is None
    assert WorkFolder(None).backend_of("ocr", "STOP") is None


# ------------------------------------------------------------------------------------ the command
def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as res:
        return json.loads(res.read())


@pytest.mark.slow
def test_view_a_hub_repo_at_a_revision(hub_server, dataset, tmp_path):
    from publishing.card import write_card
    from publishing.push import push_dataset

    small = write_dataset(tmp_path / "small" / "mmat-1m", n_train=6)
    write_card(small)
    push_dataset(small, "team/mmat-view", "v1.0.0")
    write_dataset(small, n_train=10)  # v1.1.0 has more rows
    write_card(small)
    push_dataset(small, "team/mmat-view", "v1.1.0")
    old = ViewerApp.open("team/mmat-view", config="orr", revision="v1.0.0")
    expected_old = [make_dialogue(s, sp, i)["orr"]["id"] for s in SOURCES for sp, n in (("train", 6), ("validation", 1))
                    for i in range(n)]
    assert [r["id"] for r in old.rows({"limit": "500"})["rows"]] == expected_old
    assert old.dialogue("orr", expected_old[3])["id"] == expected_old[3]
    assert ViewerApp.open("team/mmat-view", config="orr").count({})["total"] == len(SOURCES) * (10 + 2)
    with pytest.raises(ViewerError, match="no revision 'v9'"):
        ViewerApp.open("team/mmat-view", revision="v9")
    # the command itself, in its own interpreter, serving the tagged revision
    env = {**hub_server.client_env(tmp_path / "client"), "PYTHONPATH": str(REPO)}
    proc, url = start_view(["team/mmat-view", "--revision", "v1.0.0", "--config", "orr"], env, stop_after=300)
    try:
        assert _get(url + "api/count")["total"] == len(expected_old)
        page = _get(url + "api/rows?source=tabmwp&limit=100")
        assert [r["id"] for r in page["rows"]] == [i for i in expected_old if i.startswith("tabmwp/")]
        with urllib.request.urlopen(url + page["rows"][0]["thumb"].lstrip("/"), timeout=60) as res:
            assert res.headers["Content-Type"] == "image/jpeg" and res.read()[:2] == b"\xff\xd8"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("args,message", [
    (["/no/such/folder"], "neither a dataset folder nor a Hub repo id"),
    (["{folder}", "--config", "xyz"], "--config must be one of"),
    (["{folder}", "--revision", "v1"], "--revision applies to a Hub repo"),
    (["{empty}"], "no parquet shards"),
])
def test_command_errors_are_one_line(dataset, tmp_path, args, message):
    from typer.testing import CliRunner

    from mmat_cli import app

    (tmp_path / "empty").mkdir()
    args = [a.format(folder=dataset, empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(app, ["view", *args, "--no-open"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_export_refuses_a_folder_with_other_files(dataset, tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["view", str(dataset), "--export", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
