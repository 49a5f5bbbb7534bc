"""`push_dataset` / `show_card` against the project's Hub-compatible server, read back by real clients."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from publishing.changelog import read_card_metadata
from publishing.push import PushError, TagExistsError, published_files, push_dataset, show_card
from tests.dataset_factory import make_dataset_folder

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "tester/mmat-1m"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refs(repo_id: str = REPO_ID) -> tuple[dict, dict]:
    from huggingface_hub import HfApi

    refs = HfApi().list_repo_refs(repo_id, repo_type="dataset")
    return {b.name: b.target_commit for b in refs.branches}, {t.name: t.target_commit for t in refs.tags}


def _assert_revision_matches_folder(folder: Path, revision: str, repo_id: str = REPO_ID) -> None:
    """The repo at `revision` holds exactly the folder's published files, byte for byte (plus .gitattributes)."""
    from huggingface_hub import HfApi

    entries = {e.path: e for e in HfApi().list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
               if hasattr(e, "size")}
    local = published_files(folder)
    assert set(entries) - {".gitattributes"} == set(local)
    for path, file in local.items():
        entry = entries[path]
        assert entry.size == file.stat().st_size, path
        if entry.lfs is not None:
            assert entry.lfs.sha256 == _sha256(file), path


@pytest.mark.slow
def test_push_two_versions_and_load_each_by_revision(hub_server, hub_client, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2)  # 10 train / 5 validation per format
    url1 = push_dataset(folder, REPO_ID, "v1.0.0")
    assert url1 == f"{hub_server.url}/datasets/{REPO_ID}/tree/v1.0.0"
    v1_card = (folder / "README.md").read_text()
    make_dataset_folder(tmp_path / "work", n_rows_per_source=4)  # 20 train / 5 validation per format
    url2 = push_dataset(folder, REPO_ID, "v1.1.0", changelog=["Doubled the training rows."])
    assert url2.endswith("/tree/v1.1.0")

    branches, tags = _refs()
    assert set(tags) == {"v1.0.0", "v1.1.0"}
    assert tags["v1.1.0"] == branches["main"] != tags["v1.0.0"]
    _assert_revision_matches_folder(folder, "v1.1.0")

    # Each version's card carries its own version; the newer one has the whole changelog.
    assert show_card(REPO_ID, revision="v1.0.0") == v1_card
    meta1 = read_card_metadata_text(show_card(REPO_ID, revision="v1.0.0"))
    meta2 = read_card_metadata_text(show_card(REPO_ID, revision="v1.1.0"))
    assert meta1["version"] == "1.0.0" and [e["version"] for e in meta1["changelog"]] == ["1.0.0"]
    assert meta2["version"] == "1.1.0" and [e["version"] for e in meta2["changelog"]] == ["1.1.0", "1.0.0"]
    assert meta2["changelog"][0]["changes"][:2] == ["Doubled the training rows.", "`rr` rows: train 10 → 20 (+10)."]

    counts = hub_client(f"""
        import json, datasets
        out = {{}}
        for rev in ("v1.0.0", "v1.1.0", None):
            ds = datasets.load_dataset("{REPO_ID}", "orr", revision=rev)
            out[str(rev)] = {{split: d.num_rows for split, d in ds.items()}}
        ds = datasets.load_dataset("{REPO_ID}", "rr-tabmwp", revision="v1.0.0")
        out["rr-tabmwp@v1.0.0"] = {{split: d.num_rows for split, d in ds.items()}}
        row = ds["train"][0]
        out["row"] = [row["format"], row["source"], len(row["images"]), row["messages"][1]["content"][0]["type"]]
        for rev in ("v1.0.0", "v1.1.0"):
            st = datasets.load_dataset("{REPO_ID}", "orr", revision=rev, streaming=True)
            out["stream@" + rev] = {{split: sum(1 for _ in st[split]) for split in ("train", "validation")}}
        first = next(iter(datasets.load_dataset("{REPO_ID}", "orr", revision="v1.1.0", streaming=True)["train"]))
        out["stream_row"] = [first["format"], type(first["images"][0]).__name__]
        print(json.dumps(out))
    """)
    assert counts["v1.0.0"] == {"train": 10, "validation": 5}
    assert counts["v1.1.0"] == {"train": 20, "validation": 5}
    assert counts["None"] == {"train": 20, "validation": 5}  # main is the latest push
    assert counts["rr-tabmwp@v1.0.0"] == {"train": 2, "validation": 1}
    assert counts["row"] == ["rr", "tabmwp", 1, "image"]  # messages[0] is the system turn; [1] opens with the image
    assert counts["stream@v1.0.0"] == {"train": 10, "validation": 5}
    assert counts["stream@v1.1.0"] == {"train": 20, "validation": 5}
    assert counts["stream_row"][0] == "orr" and counts["stream_row"][1].endswith("ImageFile")


def read_card_metadata_text(text: str) -> dict:
    from publishing.changelog import split_front_matter

    return split_front_matter(text)[0]


def test_existing_tag_is_refused_before_anything_is_uploaded(hub_server, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    branches, tags = _refs()
    make_dataset_folder(tmp_path / "work", n_rows_per_source=3, sources=["tabmwp"])
    mark = len(hub_server.requests)
    with pytest.raises(TagExistsError) as err:
        push_dataset(folder, REPO_ID, "v1.0.0")
    message = str(err.value)
    assert "v1.0.0 already exists" in message and "\n" not in message
    assert f"{hub_server.url}/datasets/{REPO_ID}/tree/v1.0.0" in message
    after = hub_server.requests[mark:]
    assert [m for m, p in after if m in ("PUT", "POST")] == []  # no preupload, LFS, commit or tag call
    assert _refs() == (branches, tags)
    # A branch name is not a free tag either.
    with pytest.raises(TagExistsError):
        push_dataset(folder, REPO_ID, "main")


def test_card_round_trips_through_the_hub(hub_server, tmp_path):
    from huggingface_hub import DatasetCard, HfApi, hf_hub_download

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp", "cauldron"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    local = (folder / "README.md").read_text()
    card = DatasetCard.load(REPO_ID, repo_type="dataset")
    local_meta, local_body = read_card_metadata_text(local), local.split("\n---\n", 1)[1]
    data = card.data.to_dict()
    assert data == local_meta
    assert card.text.strip() == local_body.strip()
    assert data["version"] == "1.0.0"
    assert data["license"] == "other" and data["source_licenses"]["tabmwp"] == "cc-by-nc-sa-4.0"
    assert {c["config_name"] for c in data["configs"]} == {"rr", "orr", "rr-tabmwp", "orr-tabmwp", "rr-cauldron", "orr-cauldron"}
    assert f"{REPO_ID}" in card.text  # the loading example names the repo
    # The figure the card shows is in the tagged revision, byte for byte.
    assert "](figures/stats.png)" in card.text
    png = hf_hub_download(REPO_ID, "figures/stats.png", repo_type="dataset", revision="v1.0.0", local_dir=tmp_path / "dl")
    assert Path(png).read_bytes() == (folder / "figures/stats.png").read_bytes()
    # The Hub-side view of the card metadata (repo_info cardData) agrees.
    info = HfApi().dataset_info(REPO_ID, revision="v1.0.0")
    assert info.card_data.to_dict()["version"] == "1.0.0"
    rendered = show_card(REPO_ID, revision="v1.0.0", rendered=True, width=120, color=False)
    assert "card metadata" in rendered and "1.0.0" in rendered and "Operator usage" in rendered
    with pytest.raises(PushError, match="no revision v9"):
        show_card(REPO_ID, revision="v9.9.9")
    with pytest.raises(PushError, match="not found"):
        show_card("tester/does-not-exist")


def test_reshard_removes_stale_shards_in_the_same_commit(hub_server, tmp_path):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=4, sources=["tabmwp"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    # Re-shard orr/tabmwp/train into two files: the old name must disappear from the repo.
    shard_dir = folder / "data/orr/tabmwp"
    old = shard_dir / "train-00000-of-00001.parquet"
    table = pq.read_table(old)
    old.unlink()
    pq.write_table(table.slice(0, 2), shard_dir / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(2), shard_dir / "train-00001-of-00002.parquet")
    (folder / "figures/stats.png").unlink()
    commits_before = len(HfApi().list_repo_commits(REPO_ID, repo_type="dataset"))
    push_dataset(folder, REPO_ID, "v1.0.1", commit_message="Re-sharded orr/tabmwp.")
    meta = read_card_metadata_text(show_card(REPO_ID, revision="v1.0.1"))
    assert meta["changelog"][0] == {"version": "1.0.1", "date": meta["changelog"][0]["date"],
                                    "changes": ["Re-sharded orr/tabmwp."]}
    from huggingface_hub import HfApi as _Api

    assert _Api().list_repo_commits(REPO_ID, repo_type="dataset")[0].title == "Re-sharded orr/tabmwp."
    files = HfApi().list_repo_files(REPO_ID, repo_type="dataset", revision="v1.0.1")
    assert "data/orr/tabmwp/train-00000-of-00001.parquet" not in files
    assert {"data/orr/tabmwp/train-00000-of-00002.parquet", "data/orr/tabmwp/train-00001-of-00002.parquet"} <= set(files)
    assert len(HfApi().list_repo_commits(REPO_ID, repo_type="dataset")) == commits_before + 1  # one commit
    _assert_revision_matches_folder(folder, "v1.0.1")


def test_interrupted_commit_leaves_no_version_and_a_rerun_completes_it(hub_server, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp", "infoseek"])
    hub_server.fail("commit")
    with pytest.raises(PushError) as err:
        push_dataset(folder, REPO_ID, "v1.0.0")
    assert "\n" not in str(err.value)
    branches, tags = _refs()
    assert tags == {}
    from huggingface_hub import HfApi

    assert [c.title for c in HfApi().list_repo_commits(REPO_ID, repo_type="dataset")] == ["initial commit"]
    hub_server.release()
    mark = len(hub_server.requests)
    url = push_dataset(folder, REPO_ID, "v1.0.0")
    assert url.endswith("/tree/v1.0.0")
    assert [p for m, p in hub_server.requests[mark:] if m == "PUT"] == []  # every object was already up
    branches, tags = _refs()
    assert tags["v1.0.0"] == branches["main"]
    _assert_revision_matches_folder(folder, "v1.0.0")
    # The token reached the server, never the output, the logs or the error.
    out = capsys.readouterr()
    token = hub_server.token
    assert token not in out.out + out.err + caplog.text + str(err.value)


@pytest.mark.slow
def test_push_killed_mid_upload_then_rerun_leaves_a_consistent_repo(hub_server, hub_client, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, card=True)
    n_lfs = sum(1 for p in published_files(folder) if p.endswith((".parquet", ".png", ".jpg")))
    fault = hub_server.block("lfs_put", after=3)  # hold the 4th upload; 3 complete
    env = hub_server.client_env(tmp_path / "client")
    env["PYTHONPATH"] = str(REPO)
    code = f"from publishing.push import push_dataset; push_dataset({str(folder)!r}, {REPO_ID!r}, 'v1.0.0')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert fault.reached.wait(timeout=90), "push never reached the 4th LFS upload"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        hub_server.release()
    assert proc.returncode == -signal.SIGKILL
    # Killed half-way: no version, main untouched, and only complete, verified objects in the store.
    branches, tags = _refs()
    assert tags == {}
    store = hub_server.store
    stored = [p for p in (store.root / "objects").rglob("*") if p.is_file()]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in stored)
    assert 3 <= len([p for p in stored if p.stat().st_size > 1000]) < n_lfs
    # Re-run: completes, uploads only what is missing, tags the one commit.
    mark = len(hub_server.requests)
    push_dataset(folder, REPO_ID, "v1.0.0")
    puts = [p for m, p in hub_server.requests[mark:] if m == "PUT"]
    assert 0 < len(puts) <= n_lfs - 3
    branches, tags = _refs()
    assert tags["v1.0.0"] == branches["main"]
    _assert_revision_matches_folder(folder, "v1.0.0")
    counts = hub_client(f"""
        import json, datasets
        ds = datasets.load_dataset("{REPO_ID}", "orr", revision="v1.0.0")
        print(json.dumps({{s: d.num_rows for s, d in ds.items()}}))
    """)
    assert counts == {"train": 10, "validation": 5}


def test_push_needs_a_token_and_a_valid_folder(hub_server, tmp_path, monkeypatch):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "empty_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "empty_home" / "stored_tokens"))
    with pytest.raises(PushError, match="no Hugging Face token"):
        push_dataset(folder, REPO_ID, "v1.0.0")
    # An explicit token works without the environment.
    assert push_dataset(folder, REPO_ID, "v1.0.0", token=hub_server.token).endswith("/tree/v1.0.0")
    with pytest.raises(PushError, match="no parquet shards"):
        push_dataset(tmp_path, REPO_ID, "v2.0.0", token=hub_server.token)
    (folder / "mmat-1m.py").write_text("# a loading script\n")
    with pytest.raises(PushError, match="loading scripts"):
        push_dataset(folder, REPO_ID, "v2.0.0", token=hub_server.token)
    (folder / "mmat-1m.py").unlink()
    with pytest.raises(PushError, match="invalid tag"):
        push_dataset(folder, REPO_ID, "v 2", token=hub_server.token)
    with pytest.raises(PushError, match="Invalid credentials|401"):
        push_dataset(folder, REPO_ID, "v2.0.0", token="hf_wrong_token_abcdefgh")


def test_show_card_reads_a_local_folder(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=1, sources=["tabmwp"], card=True)
    assert show_card(folder) == (folder / "README.md").read_text()
    assert show_card(folder / "README.md").startswith("---\n")
    with pytest.raises(PushError, match="local path"):
        show_card(folder, revision="v1.0.0")


def test_private_push_and_large_folder_mode(hub_server, tmp_path):
    import urllib.error
    import urllib.request

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp", "infoseek"])
    url = push_dataset(folder, REPO_ID, "v1.0.0", private=True, large_folder=True)
    with pytest.raises(urllib.error.HTTPError) as err:  # anonymous readers do not see it
        urllib.request.urlopen(f"{hub_server.url}/api/datasets/{REPO_ID}", timeout=10)
    assert err.value.code == 404
    branches, tags = _refs()
    assert tags["v1.0.0"] == branches["main"]
    assert url.endswith("/tree/v1.0.0")
    _assert_revision_matches_folder(folder, "v1.0.0")
    assert read_card_metadata_text(show_card(REPO_ID, revision="v1.0.0"))["version"] == "1.0.0"


# ---------------------------------------------------------------------------------- concurrent pushes
def _someone_else_commits(message: str) -> str:
    """Another pusher's commit on main (what a concurrent `mmat push` does); returns its oid."""
    from huggingface_hub import HfApi

    info = HfApi().upload_file(path_or_fileobj=message.encode(), path_in_repo=f"notes/{message}.txt",
                               repo_id=REPO_ID, repo_type="dataset", commit_message=message)
    return info.oid


def test_a_push_whose_main_moved_since_it_looked_fails_and_tags_nothing(hub_server, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    real_commit = HfApi.create_commit

    raced = []

    def racing(self, *args, **kwargs):  # main moves between our look at it and our commit
        if not raced:
            raced.append(True)
            _someone_else_commits("racing")  # (its own commit goes through `create_commit` too)
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", racing)
    with pytest.raises(PushError) as err:
        push_dataset(folder, REPO_ID, "v1.1.0")
    assert "\n" not in str(err.value)
    branches, tags = _refs()
    assert set(tags) == {"v1.0.0"}  # no tag for a commit that would have overwritten the other push
    assert [c.title for c in HfApi().list_repo_commits(REPO_ID, repo_type="dataset")][0] == "racing"


def test_the_tag_names_the_push_commit_even_when_main_moves_before_tagging(hub_server, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    real_tag = HfApi.create_tag
    moved = []

    def racing(self, *args, **kwargs):  # another push lands between our commit and our tag
        moved.append(_someone_else_commits("after"))
        return real_tag(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_tag", racing)
    push_dataset(folder, REPO_ID, "v1.0.0")
    branches, tags = _refs()
    assert branches["main"] == moved[0] != tags["v1.0.0"]
    _assert_revision_matches_folder(folder, "v1.0.0")  # the tag holds exactly what was pushed


def test_a_tag_named_like_a_branch_is_refused_before_anything_is_uploaded(hub_server, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    push_dataset(folder, REPO_ID, "v1.0.0")
    before = _refs()
    mark = len(hub_server.requests)
    with pytest.raises(TagExistsError) as err:
        push_dataset(folder, REPO_ID, "main")
    assert "is a branch" in str(err.value)
    assert [m for m, p in hub_server.requests[mark:] if m in ("PUT", "POST")] == []
    assert _refs() == before


def test_hidden_temp_files_are_never_uploaded(hub_server, tmp_path):
    from huggingface_hub import HfApi

    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=1, sources=["tabmwp"])
    shard = next((folder / "data").rglob("*.parquet"))
    litter = [shard.parent / ".tmp-w0of1-4242-00000.parquet", folder / "figures" / ".tmp-abc.png",
              folder / ".tmp-card", shard.parent / f"{shard.name}.tmp"]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(shard.read_bytes())
    push_dataset(folder, REPO_ID, "v1.0.0")
    files = HfApi().list_repo_files(REPO_ID, repo_type="dataset", revision="v1.0.0")
    assert not [f for f in files if ".tmp" in f], files
    assert any(f.endswith(".parquet") for f in files)


def test_a_folder_whose_shards_hold_fewer_rows_than_its_card_is_refused(hub_server, tmp_path):
    folder = make_dataset_folder(tmp_path / "work", n_rows_per_source=2, sources=["tabmwp", "infoseek"], card=True)
    next((folder / "data").rglob("*infoseek*/*.parquet")).unlink()  # a shard deleted by hand
    mark = len(hub_server.requests)
    with pytest.raises(PushError) as err:
        push_dataset(folder, REPO_ID, "v1.0.0")
    message = str(err.value)
    assert "fewer rows than its card says" in message and "infoseek" in message and "\n" not in message
    assert [m for m, p in hub_server.requests[mark:] if m in ("PUT", "POST")] == []
