"""Bad inputs through the real runner (`mmat generate` in a subprocess): each kind is quarantined with id,
stage, error type and one-line message while every other sample finishes; `--max-quarantine-rate` turns
too many into exit code 3; `mmat retry` re-runs only the quarantined ids once their inputs are fixed.
A teacher that replies garbage (a local OpenAI-compatible server) quarantines its sample at `rationale`.
"""
from __future__ import annotations

import json
import shutil

import pytest

from tests.runner_support import (FORMATS, copy_source, default_work_dir, inspect_folder, load_ids, mmat, mmat_env,
                                  read_quarantine, source, source_ids, write_config)

T = "tabmwp/free_text/"  # 137, 174 and 248 are free-text problems
I = "infoseek/infoseek/"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Private copies of two sources with one record broken per kind:
    tabmwp 137: zero-byte table image; 174: bytes that are no image; 248: no `question` field
    (all caught at the foundation stage, images validated there); infoseek train_2's image is corrupt
    and `validate_images: false`, so the runner's own decode catches it."""
    root = tmp_path_factory.mktemp("broken")
    tabmwp = copy_source("tabmwp", root)
    infoseek = copy_source("infoseek", root)
    pristine = {p: p.read_bytes() for p in (tabmwp / "tables/137.png", tabmwp / "tables/174.png",
                                            tabmwp / "problems_train.json", infoseek / "images/oven_04027781.jpg")}
    (tabmwp / "tables/137.png").write_bytes(b"")
    (tabmwp / "tables/174.png").write_bytes(b"this is not a png at all" * 10)
    problems = json.loads((tabmwp / "problems_train.json").read_text())
    del problems["248"]["question"]
    (tabmwp / "problems_train.json").write_text(json.dumps(problems))
    (infoseek / "images/oven_04027781.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    config = write_config(root / "broken.yaml", [source("tabmwp", tabmwp),
                                                 source("infoseek", infoseek, limit=8, validate_images=False)])
    out = root / "out"
    first = mmat("generate", "--config", config, "--out", out, "--max-quarantine-rate", "0.05", cwd=root)
    return {"root": root, "config": config, "out": out, "first": first, "pristine": pristine}


def test_each_bad_input_kind_is_quarantined_with_stage_type_and_message(broken):
    quarantine = read_quarantine(default_work_dir(broken["out"]))
    assert set(quarantine) == {T + "137", T + "174", T + "248", I + "infoseek_train_00000002"}
    assert quarantine[T + "137"]["stage"] == "foundation" and "empty" in quarantine[T + "137"]["message"]
    assert quarantine[T + "174"]["stage"] == "foundation"
    assert quarantine[T + "174"]["error_type"] == "ImageDecodeError"
    assert quarantine[T + "248"]["stage"] == "foundation"
    assert quarantine[T + "248"]["message"] == "missing field 'question'"
    runtime = quarantine[I + "infoseek_train_00000002"]  # decoded by the runner, not the source
    assert (runtime["stage"], runtime["error_type"]) == ("foundation", "ImageDecodeError")
    for record in quarantine.values():
        assert record["message"] and "\n" not in record["message"]
        assert record["source"] == record["id"].split("/")[0]


def test_the_other_samples_finish_and_the_summary_table_shows_the_stages(broken):
    good, _ = source_ids(broken["config"])
    expected = good - {I + "infoseek_train_00000002"}
    state = inspect_folder(broken["out"])
    assert state.card_mismatches == [] and state.unreadable == []
    for fmt in FORMATS:
        assert state.id_set(fmt) == expected and not state.duplicates(fmt)
    assert sorted(load_ids(broken["out"], "orr")) == sorted(expected)
    stdout = broken["first"].stdout
    assert "quarantined this run" in stdout and "foundation" in stdout
    assert f"{len(expected)} finished, 4 quarantined" in stdout


def test_max_quarantine_rate_exits_non_zero_but_still_writes_the_dataset(broken):
    first = broken["first"]
    assert first.returncode == 3, first.stderr
    assert "quarantine rate" in first.stderr and "above the allowed maximum" in first.stderr
    assert "Traceback" not in first.stderr
    assert (broken["out"] / "README.md").exists()
    # the rate is the dataset's, not the last run's: a rerun with nothing to do is judged the same
    again = mmat("generate", "--config", broken["config"], "--out", broken["out"], "--quiet",
                 "--max-quarantine-rate", "0.05", cwd=broken["root"])
    assert again.returncode == 3
    under = mmat("generate", "--config", broken["config"], "--out", broken["out"], "--quiet",
                 "--max-quarantine-rate", "0.5", cwd=broken["root"])
    assert under.returncode == 0, under.stderr


def test_retry_reruns_only_the_quarantined_ids(broken, tmp_path):
    root = tmp_path / "fix"
    shutil.copytree(broken["root"], root)
    out, work = root / "out", default_work_dir(root / "out")
    config = root / "broken.yaml"
    config.write_text(config.read_text().replace(str(broken["root"]), str(root)))
    rows_before = (work / "rows-0.jsonl").read_text().splitlines()
    # fix three of the four inputs; 174 stays broken
    for original, data in broken["pristine"].items():
        if original.name != "174.png":
            (root / original.relative_to(broken["root"])).write_bytes(data)

    result = mmat("retry", "--config", config, "--out", out, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "samples: 3 finished, 1 quarantined, 0 done before (of 4)" in result.stdout

    rows_after = (work / "rows-0.jsonl").read_text().splitlines()
    assert rows_after[: len(rows_before)] == rows_before  # nothing finished was redone
    new_ids = {json.loads(line)["id"] for line in rows_after[len(rows_before):]}
    assert new_ids == {T + "137", T + "248", I + "infoseek_train_00000002"}
    quarantine_lines = [json.loads(line) for line in (work / "quarantine.jsonl").read_text().splitlines()]
    assert [r["id"] for r in quarantine_lines] == [T + "174"]  # compacted: one current record
    good, _ = source_ids(config)
    state = inspect_folder(out)
    assert state.card_mismatches == []
    for fmt in FORMATS:
        assert state.id_set(fmt) == good and not state.duplicates(fmt)

    # the last one fixed: retry finishes it; then there is nothing left to retry
    (root / "tabmwp/tables/174.png").write_bytes(broken["pristine"][broken["root"] / "tabmwp/tables/174.png"])
    result = mmat("retry", "--config", config, "--out", out, "--quiet", cwd=root)
    assert result.returncode == 0, result.stderr
    assert read_quarantine(work) == {}
    assert inspect_folder(out).id_set() == good | {T + "174"}
    nothing = mmat("retry", "--config", config, "--out", out, cwd=root)
    assert nothing.returncode == 0 and "nothing to retry" in nothing.stdout


def test_teacher_garbage_quarantines_that_sample_at_rationale_and_the_rest_finish(tmp_path):
    from tests.openai_server import OpenAICompatServer, ok

    with OpenAICompatServer() as server:
        # samples run one at a time, so the first sample's final answer gets both garbage replies
        server.script("final_answer", ok("no json here"), ok("still {not json"))
        config = write_config(tmp_path / "openai.yaml", [source("tabmwp", limit=5)],
                              teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url,
                                       "max_retries": 0, "timeout_s": 20},
                              runner={"max_concurrency": 1})
        out = tmp_path / "out"
        result = mmat("generate", "--config", config, "--out", out, cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY="sk-test-local-server-000"))
    assert result.returncode == 0, result.stderr
    quarantine = read_quarantine(default_work_dir(out))
    assert len(quarantine) == 1
    [record] = quarantine.values()
    assert (record["stage"], record["error_type"]) == ("rationale", "TeacherError")
    assert "unusable" in record["message"]
    good, _ = source_ids(config)
    assert inspect_folder(out).id_set() == good - set(quarantine)
    assert len(good) == 5
    assert "4 finished, 1 quarantined" in result.stdout
