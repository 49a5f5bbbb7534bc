"""The test Hub itself: the protocol facts of HUB_PROTOCOL.md that the push/load tests rely on."""
from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest

from tests.hub_server import HubServer, git_blob_oid

REPO_ID = "tester/proto"


def _req(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _upload(api, files: dict[str, bytes], message: str = "add"):
    from huggingface_hub import CommitOperationAdd

    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(REPO_ID, ops, commit_message=message, repo_type="dataset")


@pytest.fixture
def api(hub_server):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(REPO_ID, repo_type="dataset")
    return api


def test_create_repo_conflict_and_exist_ok(hub_server, api):
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO_ID, repo_type="dataset")
    assert err.value.response.status_code == 409
    url = api.create_repo(REPO_ID, repo_type="dataset", exist_ok=True)
    assert str(url).endswith(f"/datasets/{REPO_ID}")
    assert api.list_repo_files(REPO_ID, repo_type="dataset") == [".gitattributes"]


def test_files_lfs_and_regular_resolve_with_ranges(hub_server, api):
    blob = bytes(range(256)) * 40  # binary → LFS
    text = b"hello\n"
    info = _upload(api, {"data/x.parquet": blob, "notes.txt": text})
    entries = {e.path: e for e in api.list_repo_tree(REPO_ID, repo_type="dataset", recursive=True)}
    assert entries["data/x.parquet"].lfs.sha256 == hashlib.sha256(blob).hexdigest()
    assert entries["notes.txt"].lfs is None and entries["notes.txt"].blob_id == git_blob_oid(text)
    assert type(entries["data"]).__name__ == "RepoFolder"
    base = f"{hub_server.url}/datasets/{REPO_ID}/resolve/main/data/x.parquet"
    status, headers, body = _req(base, "HEAD")
    assert status == 200 and headers["X-Repo-Commit"] == info.oid and int(headers["Content-Length"]) == len(blob)
    assert "X-Xet-Hash" not in headers
    status, headers, body = _req(base, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == blob[10:20] and headers["Content-Range"] == f"bytes 10-19/{len(blob)}"
    status, _, body = _req(base, headers={"Range": "bytes=-5"})
    assert status == 206 and body == blob[-5:]
    # The datasets probes: missing files are 404 + EntryNotFound.
    for name in ("proto.py", ".huggingface.yaml", "dataset_infos.json"):
        status, headers, _ = _req(f"{hub_server.url}/datasets/{REPO_ID}/resolve/{info.oid}/{name}", "HEAD")
        assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    status, headers, _ = _req(f"{hub_server.url}/datasets/{REPO_ID}/resolve/nope/notes.txt", "HEAD")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    status, headers, _ = _req(f"{hub_server.url}/api/datasets/tester/missing")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    paths = api.get_paths_info(REPO_ID, ["notes.txt", "data", "absent"], repo_type="dataset")
    assert sorted(p.path for p in paths) == ["data", "notes.txt"]


def test_commit_with_stale_parent_is_refused(hub_server, api):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    first = _upload(api, {"a.txt": b"1"})
    _upload(api, {"a.txt": b"2"})
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO_ID, [CommitOperationAdd("a.txt", b"3")], commit_message="late", repo_type="dataset",
                          parent_commit=first.oid)
    assert err.value.response.status_code == 412
    assert [c.title for c in api.list_repo_commits(REPO_ID, repo_type="dataset")] == ["add", "add", "initial commit"]


def test_tags_branches_and_deletes(hub_server, api):
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    c1 = _upload(api, {"d/a.txt": b"a", "d/b.txt": b"b"})
    api.create_tag(REPO_ID, tag="v1", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO_ID, tag="v1", repo_type="dataset")
    assert err.value.response.status_code == 409
    api.create_branch(REPO_ID, branch="dev", repo_type="dataset")
    api.create_commit(REPO_ID, [CommitOperationDelete("d/")], commit_message="rm", repo_type="dataset")
    refs = api.list_repo_refs(REPO_ID, repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": c1.oid}
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert api.list_repo_files(REPO_ID, repo_type="dataset") == [".gitattributes"]
    assert "d/a.txt" in api.list_repo_files(REPO_ID, repo_type="dataset", revision="v1")
    assert "d/b.txt" in api.list_repo_files(REPO_ID, repo_type="dataset", revision="dev")
    api.delete_tag(REPO_ID, tag="v1", repo_type="dataset")
    assert api.list_repo_refs(REPO_ID, repo_type="dataset").tags == []


def test_lfs_upload_with_wrong_bytes_is_rejected_and_commit_needs_the_object(hub_server, api):
    token = hub_server.token
    good = b"x" * 2000
    oid = hashlib.sha256(good).hexdigest()
    batch_url = f"{hub_server.url}/datasets/{REPO_ID}.git/info/lfs/objects/batch"
    body = json.dumps({"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(good)}]}).encode()
    status, _, out = _req(batch_url, "POST", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    href = json.loads(out)["objects"][0]["actions"]["upload"]["href"]
    status, _, _ = _req(href, "PUT", b"y" * 2000)
    assert status == 400
    assert not hub_server.store.has_object(oid)
    line = json.dumps({"key": "lfsFile", "value": {"path": "f.bin", "algo": "sha256", "oid": oid, "size": len(good)}})
    payload = (json.dumps({"key": "header", "value": {"summary": "s"}}) + "\n" + line + "\n").encode()
    commit_url = f"{hub_server.url}/api/datasets/{REPO_ID}/commit/main"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    assert _req(commit_url, "POST", payload, headers)[0] == 422
    assert _req(href, "PUT", good)[0] == 200
    status, _, out = _req(batch_url, "POST", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert "actions" not in json.loads(out)["objects"][0]  # already stored: nothing to upload
    assert _req(commit_url, "POST", payload, headers)[0] == 200
    # Writes need the token.
    assert _req(commit_url, "POST", payload, {"Content-Type": "application/x-ndjson"})[0] == 401


def test_private_repos_are_hidden_without_a_token(hub_server):
    from huggingface_hub import HfApi

    HfApi().create_repo("tester/secret", repo_type="dataset", private=True)
    status, headers, _ = _req(f"{hub_server.url}/api/datasets/tester/secret")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    status, _, out = _req(f"{hub_server.url}/api/datasets/tester/secret",
                          headers={"Authorization": f"Bearer {hub_server.token}"})
    assert status == 200 and json.loads(out)["private"] is True


def test_state_persists_across_a_restart(tmp_path):
    root = tmp_path / "hub"
    with HubServer(root) as first:
        first.store.create_repo("dataset", "tester/keep", private=False)
        first.store.create_ref("dataset", "tester/keep", "tag", "v1", "main")
    with HubServer(root) as second:
        status, _, out = _req(f"{second.url}/api/datasets/tester/keep/refs")
        assert status == 200 and [t["name"] for t in json.loads(out)["tags"]] == ["v1"]
