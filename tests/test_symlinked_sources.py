"""Issue 30: symlinked sources work the way users lay them out (`generation.sources.image_paths`).

Before: a source folder whose images are symlinks (a `coco/` folder linked into a LLaVA-style layout, a
`huggingface_hub` snapshot, which is all symlinks into `blobs/`) had every record quarantined one by
one ("image path outside the source folder", no fix named), the run exited 3, and a rerun kept them
quarantined until `mmat retry`. Now: links may lead into the source folder, the Hugging Face cache or
a folder listed in the source's `image_roots`; paths as written still may not leave (absolute, `..`);
a refusal names `image_roots`; a source whose every record is refused stops the run at the start with
one line (exit 2) and quarantines nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from generation.config import load_config
from generation.schema import Quarantined, Sample
from generation.sources import SourceConfig, SourceError, read_source
from generation.sources.image_paths import OUTSIDE_REASON, hf_hub_cache
from tests.runner_support import SAMPLES, mmat, source, write_config

FOLDERS = ("CLEVR_v1.0", "ai2d", "chartqa", "coco", "docvqa", "geoqa+", "gqa", "sqa")


@pytest.fixture(autouse=True)
def own_hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache of the test's own, so the machine's cache never decides an outcome."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def linked_layout(tmp_path: Path, outside: Path) -> Path:
    """The bundled LLaVA-CoT sample with every image folder moved to `outside` and linked back in."""
    src = tmp_path / "llava"
    src.mkdir()
    shutil.copy(SAMPLES / "llava_cot" / "train.jsonl", src / "train.jsonl")
    outside.mkdir(parents=True, exist_ok=True)
    for name in FOLDERS:
        shutil.copytree(SAMPLES / "llava_cot" / name, outside / name)
        (src / name).symlink_to(outside / name, target_is_directory=True)
    return src


def read(src: Path, **kw) -> tuple[dict[str, Sample], dict[str, Quarantined]]:
    items = list(read_source(SourceConfig(kind="llava_cot", path=src, **kw)))
    return ({x.id: x for x in items if isinstance(x, Sample)},
            {x.sample_id: x for x in items if isinstance(x, Quarantined)})


def test_linked_folders_outside_stop_the_source_at_the_end_with_one_line_naming_image_roots(tmp_path):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    with pytest.raises(SourceError) as err:
        read(src)
    message = str(err.value)
    assert message.startswith("llava_cot: every record (12) was refused because its image path leads outside "
                              f"the source folder {src}")
    assert "`image_roots:`" in message and str(data) in message and "\n" not in message

    good, bad = read(src, image_roots=[data])  # the fix the message names
    assert len(good) == 12 and not bad
    assert all(Path(s.images[0].path).is_relative_to(data.resolve()) for s in good.values())


def test_a_partly_linked_source_quarantines_only_the_records_that_leave_and_says_how_to_allow_them(tmp_path):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    (src / "coco").unlink()
    shutil.copytree(data / "coco", src / "coco")  # coco back inside; the other folders still linked out
    good, bad = read(src, image_roots=[data / "sqa"])  # only sqa allowed
    assert good and bad
    assert all(Path(s.images[0].path).is_relative_to(src.resolve()) or "/sqa/" in s.images[0].path
               for s in good.values())
    for q in bad.values():
        assert q.reason.startswith(f"{OUTSIDE_REASON}: ") and "add that folder to `image_roots`" in q.reason
        assert str(data.resolve()) in q.reason and "\n" not in q.reason


def test_links_into_the_hugging_face_cache_are_followed_without_configuration(tmp_path, monkeypatch):
    """`hf download --local-dir` / a snapshot copied elsewhere: every file a link into the cache's blobs."""
    for setting in ("HF_HOME", "HF_HUB_CACHE"):
        cache = (tmp_path / "hf-home" / "hub") if setting == "HF_HOME" else tmp_path / "explicit-cache"
        if setting == "HF_HUB_CACHE":
            monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        assert hf_hub_cache() == cache.resolve()
        blobs = cache / "datasets--Xkev--LLaVA-CoT-100k" / "blobs"
        src = tmp_path / f"local-{setting}"
        shutil.copytree(SAMPLES / "llava_cot", src)
        for n, image in enumerate(sorted(p for p in src.rglob("*") if p.is_file() and p.suffix != ".jsonl")):
            blob = blobs / f"{setting}-{n:04d}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(image, blob)
            image.symlink_to(blob)
        good, bad = read(src)
        assert len(good) == 12 and not bad, {k: q.reason for k, q in bad.items()}
        assert all(Path(s.images[0].path).is_relative_to(blobs.resolve()) for s in good.values())


@pytest.mark.parametrize("written, why", [
    ("ABSOLUTE", "is absolute"),
    ("../data/coco/{rel}", "climbs out of the source folder with .."),
    ("coco/../../data/coco/{rel}", "climbs out of the source folder with .."),
])
def test_a_path_that_leaves_as_written_is_refused_even_into_an_allowed_folder(tmp_path, written, why):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    records = [json.loads(line) for line in (src / "train.jsonl").read_text().splitlines()]
    coco = next(r for r in records if r["image"].startswith("coco/"))
    rel = coco["image"][len("coco/"):]
    coco["image"] = str(data / "coco" / rel) if written == "ABSOLUTE" else written.format(rel=rel)
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    good, bad = read(src, image_roots=[data])
    assert len(good) == 11 and len(bad) == 1
    reason = next(iter(bad.values())).reason
    assert reason.startswith(f"{OUTSIDE_REASON}: {coco['image']} {why}: ") and "`image_roots`" in reason
    good, bad = read(src, allow_outside_paths=True)  # the explicit opt-in still reads it
    assert len(good) == 12 and not bad


def test_an_inside_detour_and_a_link_back_inside_stay_allowed(tmp_path):
    src = tmp_path / "llava"
    shutil.copytree(SAMPLES / "llava_cot", src)
    (src / "images").symlink_to(src / "coco", target_is_directory=True)  # a link that stays inside
    records = [json.loads(line) for line in (src / "train.jsonl").read_text().splitlines()]
    for r in records:
        if r["image"].startswith("coco/"):
            r["image"] = "images/../coco/" + r["image"][len("coco/"):]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    good, bad = read(src)
    assert len(good) == 12 and not bad


def test_image_roots_must_be_folders_and_relative_ones_follow_the_config_file(tmp_path):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    with pytest.raises(SourceError, match=r"image_roots entry .*missing is not a folder"):
        read(src, image_roots=[tmp_path / "missing"])
    configs = tmp_path / "configs"
    configs.mkdir()
    cfg = write_config(configs / "c.yaml", [source("llava_cot", src, image_roots=["../data"])])
    assert load_config(cfg).sources[0].image_roots == [data.resolve()]


def _quarantined(work: Path) -> list[str]:
    return [line for f in work.rglob("*quarantine*") if f.is_file() for line in f.read_text().splitlines()]


def test_generate_stops_at_the_start_then_runs_once_image_roots_names_the_folder(tmp_path):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", [source("llava_cot", src)])
    result = mmat("generate", "--config", cfg, "--out", out)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "every record (12) was refused" in errors[0] and "image_roots" in errors[0]
    assert "Traceback" not in result.stderr
    work = out.parent / ".mmat-work" / out.name
    assert not any(OUTSIDE_REASON in line for line in _quarantined(work))  # nothing quarantined one by one

    config = yaml.safe_load(cfg.read_text())
    config["sources"][0]["image_roots"] = [str(data)]
    cfg.write_text(yaml.safe_dump(config))
    result = mmat("generate", "--config", cfg, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(OUTSIDE_REASON in line for line in _quarantined(work))
    assert list(out.rglob("*.parquet"))


def test_the_stop_needs_every_built_record_refused_for_leaving_repeats_aside(tmp_path):
    data = tmp_path / "data"
    src = linked_layout(tmp_path, data)
    lines = (src / "train.jsonl").read_text().splitlines()
    (src / "train.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")  # a repeated id: counts neither way
    with pytest.raises(SourceError, match=r"every record \(12\) was refused"):
        read(src)
    broken = json.loads(lines[1])
    del broken["conversations"]  # refused for another reason: not the one layout problem
    (src / "train.jsonl").write_text("\n".join([lines[0], json.dumps(broken)] + lines[2:]) + "\n")
    good, bad = read(src)
    assert not good and len(bad) == 12
    assert sum(q.reason.startswith(OUTSIDE_REASON) for q in bad.values()) == 11
