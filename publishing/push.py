"""Publish the dataset folder to the Hugging Face Hub as a tagged version, and read cards back.

    url = push_dataset("mmat-1m", "me/mmat-1m", "v1.0.0")   # -> https://huggingface.co/datasets/me/mmat-1m/tree/v1.0.0
    load_dataset("me/mmat-1m", "orr", revision="v1.0.0")

A push is: refuse a tag that exists (before anything is uploaded), create the repo if needed, stamp
the version and changelog into the card (the Hub's card supplies the earlier history), then ONE commit
on `main` holding the card, `LICENSE.md`, `mmat_config.yaml` (how the rows were generated), the figures
and every shard (plus deletions of shards and figures the
folder no longer has, so the configs' globs never mix versions), then the tag on exactly that commit.
An interrupted push leaves `main` at its previous commit (a commit is all or nothing) with no tag;
running it again re-uploads only what the Hub lacks, commits, and tags. `large_folder=True` first
uploads the shards with `upload_folder` (huggingface_hub 2.x's resumable, batched pipeline when
hf_xet is installed; `upload_large_folder` on older versions, which had it) and then makes one last
commit with the card and the deletions, which is the commit the tag points at.

The token comes from `token=`, else `HF_TOKEN`, else the saved login; it is never printed, logged or
put in an exception message. The commit message, the changelog lines and the tag message are redacted
like logs (`generation.redact`: known keys and tokens, key-shaped strings, URL credentials) before they
reach the card or the Hub.

A push holds the dataset folder's run lock and lock (`generation.folder_lock`) from its first look at
the folder to the tag, so it never publishes a folder a running `mmat generate` is writing: it waits,
saying so, up to `lock_timeout_s` for every running generation of the folder to end, then pushes
their finished state (or stops with one line), and a generation started meanwhile waits for the push. It refuses a folder whose shards hold fewer rows than its card says (a group
or shard deleted by hand): what the card promises must be what is published.
"""
from __future__ import annotations

import logging
import re
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from generation.errors import MmatError, one_line
from generation.redact import mask_known, redact
from mmat_1m import CONFIGS_BY_NAME, card_configs
from generation.config_snapshot import CONFIG_FILENAME
from publishing.card import CARD_FILENAME, FIGURE_PATH, LICENSE_FILENAME, render_card_terminal, write_card
from publishing.changelog import normalise_version, read_card_metadata

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
BRANCH = "main"
# What a push publishes from the folder; anything else in it (caches, work files) stays local.
PUBLISHED_PREFIXES = ("data/", "figures/")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*/[A-Za-z0-9][A-Za-z0-9._\-]*$")


class PushError(MmatError, RuntimeError):
    """A push that cannot go on; the message is one line meant for the user."""


class TagExistsError(PushError):
    pass


def revision_url(endpoint: str, repo_id: str, revision: str) -> str:
    return f"{endpoint.rstrip('/')}/datasets/{repo_id}/tree/{quote(revision, safe='')}"


def published_files(dataset_dir: Path) -> dict[str, Path]:
    """path in repo -> local file: README.md, LICENSE.md, mmat_config.yaml, figures/*, data/**/*.parquet."""
    root = Path(dataset_dir)
    files = {}
    for name in (CARD_FILENAME, LICENSE_FILENAME, CONFIG_FILENAME):
        if (root / name).is_file():
            files[name] = root / name
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if rel.startswith("data/") and rel.endswith(".parquet"):
            files[rel] = path
        elif rel.startswith("figures/") and not rel.endswith(".tmp"):
            files[rel] = path
    return files


def _check_folder(root: Path, repo_id: str) -> None:
    if not root.is_dir():
        raise PushError(f"{root} is not a folder; run `mmat generate` first")
    if not card_configs(root):
        raise PushError(f"no parquet shards under {root / 'data'}; nothing to push")
    for name in {root.name, repo_id.split("/")[-1]}:
        if (root / f"{name}.py").exists():
            raise PushError(f"{root / (name + '.py')} would make datasets 5 refuse the repo (loading scripts are gone); remove it")


def card_shortfalls(root: Path) -> list[str]:
    """`config/split: card N rows, shards M` wherever the folder's shards hold fewer rows than its card
    says (rows the card promises that are gone: a group or a shard deleted by hand)."""
    import pyarrow.parquet as pq

    meta = read_card_metadata(Path(root) / CARD_FILENAME)
    out = []
    for info in meta.get("dataset_info") or []:
        spec = CONFIGS_BY_NAME.get(str(info.get("config_name")))
        if spec is None:
            continue
        for split in info.get("splits") or []:
            promised = int(split.get("num_examples") or 0)
            rows = sum(_shard_rows(p) for p in Path(root).glob(spec.shard_glob(split["name"])))
            if rows < promised:
                out.append(f"{spec.name}/{split['name']}: card {promised} rows, shards {rows}")
    return out


def _shard_rows(path: Path) -> int:
    """A shard's row count; a file that is not a readable parquet file is refused, named (issue 30)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise PushError(f"{path}: not a readable parquet file ({exc}); remove it or rerun `mmat generate`, "
                        f"then push") from None


def _check_card(root: Path) -> None:
    short = card_shortfalls(root)
    if short:
        raise PushError(f"the shards in {root} hold fewer rows than its card says ({'; '.join(short[:3])}"
                        f"{'; …' if len(short) > 3 else ''}): shards were deleted by hand. Rerun `mmat generate` "
                        f"with the same config and --out to rebuild them, or `mmat card {root} --write` to "
                        f"describe the folder as it is, then push")


def _redacted(text: Optional[str], token: Optional[str]) -> Optional[str]:
    """What may reach the Hub of a user's text: one line, secrets masked (see the module docstring)."""
    return None if text is None else redact(one_line(text), [token])


def _token_or_fail(token: Optional[str]) -> Optional[str]:
    from huggingface_hub import get_token

    if token:
        return token
    if get_token() is None:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return None  # let huggingface_hub resolve it (HF_TOKEN, then the saved login)


def _safe(message: str, token: Optional[str]) -> str:
    """One line, and never the token (whatever an underlying error put into its message)."""
    from huggingface_hub import get_token

    return mask_known(one_line(message), [token, get_token()])


def _existing_refs(api, repo_id: str):
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return None


def _refuse_existing_tag(api, repo_id: str, tag: str, refs) -> None:
    if refs is None:
        return
    if tag in {t.name for t in refs.tags}:
        raise TagExistsError(
            f"tag {tag} already exists on {repo_id} ({revision_url(api.endpoint, repo_id, tag)}); "
            "versions are immutable: push with a new --tag"
        )
    if tag in {b.name for b in refs.branches}:
        raise TagExistsError(f"{tag} is a branch of {repo_id}; pick another tag name")


def _download_card(api, repo_id: str, workdir: Path) -> Optional[Path]:
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        return Path(api.hf_hub_download(repo_id, CARD_FILENAME, repo_type=REPO_TYPE, revision=BRANCH,
                                        local_dir=str(workdir)))
    except (EntryNotFoundError, RevisionNotFoundError):
        return None


def push_dataset(
    dataset_dir: str | Path,
    repo_id: str,
    tag: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    changelog: list[str] | None = None,
    large_folder: bool = False,
    endpoint: str | None = None,
    lock_timeout_s: float = 600.0,
) -> str:
    """Upload the dataset folder to the dataset repo `repo_id` as version `tag`; return the revision URL.

    `changelog` lines describe this version in the card (default: `[commit_message]` when one is given,
    else a summary of the row-count changes since the Hub's card). Raises `TagExistsError` (before
    uploading anything) when `tag` exists, `PushError` for anything else that stops the push (the folder
    still locked by a writer after `lock_timeout_s`, a card promising rows the shards lack); both carry
    a one-line message without the token.
    """
    root = Path(dataset_dir)
    if not _REPO_ID.match(repo_id):
        raise PushError(f"repo id must look like NAMESPACE/NAME, got {repo_id!r}")
    if not _TAG.match(tag):
        raise PushError(f"invalid tag {tag!r}: use letters, digits, '.', '-' or '_' (e.g. v1.0.0)")
    _check_folder(root, repo_id)
    with ExitStack() as stack:
        _lock_folder(stack, root, lock_timeout_s)
        return _push_locked(root, repo_id, tag, token=token, private=private, commit_message=commit_message,
                            changelog=changelog, large_folder=large_folder, endpoint=endpoint)


def _lock_folder(stack: ExitStack, root: Path, timeout_s: float) -> None:
    """The run lock (exclusive: no `mmat generate` runs on the folder, so what is pushed is a finished
    state), then the folder lock (no other writer, e.g. `mmat card --write`); see `generation.folder_lock`."""
    from generation.folder_lock import FolderBusy, out_folder_lock, run_lock

    def generating() -> None:
        logger.warning("%s is being generated by a running `mmat generate`; waiting up to %.0f s for it to finish, "
                       "so the version pushed is its finished state", root, timeout_s)

    def waiting() -> None:
        logger.warning("%s is being written by another mmat process; waiting up to %.0f s for it to finish",
                       root, timeout_s)

    try:
        stack.enter_context(run_lock(root, shared=False, timeout_s=timeout_s, on_wait=generating))
        stack.enter_context(out_folder_lock(root, timeout_s=timeout_s, on_wait=waiting))
    except FolderBusy as exc:
        raise PushError(str(exc)) from None
    except OSError as exc:  # no place for a lock beside a read-only folder: nobody can be writing it either
        logger.debug("no lock for %s (%s)", root, exc)


def _push_locked(root: Path, repo_id: str, tag: str, *, token: Optional[str], private: bool,
                 commit_message: Optional[str], changelog: Optional[list[str]], large_folder: bool,
                 endpoint: Optional[str]) -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    _check_folder(root, repo_id)  # again: it may have changed while we waited for the lock
    _check_card(root)
    token = _token_or_fail(token)
    api = HfApi(endpoint=endpoint, token=token)
    version = normalise_version(tag)
    commit_message = _redacted(commit_message, token)
    message = commit_message or f"mmat-1m {tag}"
    if changelog is None and commit_message:
        changelog = [commit_message]  # `mmat push -m "..."`: the message is also the changelog line
    elif changelog is not None:
        changelog = [_redacted(line, token) or "" for line in changelog]
    try:
        # 1. A version is immutable: refuse an existing tag before anything is uploaded.
        _refuse_existing_tag(api, repo_id, tag, _existing_refs(api, repo_id))
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        refs = _existing_refs(api, repo_id)
        _refuse_existing_tag(api, repo_id, tag, refs)
        head = next((b.target_commit for b in refs.branches if b.name == BRANCH), None) if refs else None

        with tempfile.TemporaryDirectory(prefix="mmat-push-") as tmp:
            # 2. The card carries this version and the history of the card on the Hub.
            remote_card = _download_card(api, repo_id, Path(tmp)) if head else None
            write_card(root, version=version, changelog=changelog, repo_id=repo_id, previous_card=remote_card)

        local = published_files(root)
        remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=BRANCH)) if head else set()
        stale = sorted(p for p in remote if p.startswith(PUBLISHED_PREFIXES) and p not in local)

        if large_folder:
            # Resumable multi-commit upload of the shards; the final commit below carries card + deletions.
            # huggingface_hub 2.x dropped `upload_large_folder`: its `upload_folder` is the resumable,
            # batched pipeline when hf_xet is installed (a single commit otherwise).
            patterns = ["data/*.parquet", "figures/*"]  # fnmatch: `*` crosses `/`
            if hasattr(api, "upload_large_folder"):
                api.upload_large_folder(repo_id=repo_id, folder_path=str(root), repo_type=REPO_TYPE,
                                        revision=BRANCH, private=private, allow_patterns=patterns)
            else:
                api.upload_folder(repo_id=repo_id, folder_path=str(root), repo_type=REPO_TYPE, revision=BRANCH,
                                  allow_patterns=patterns, commit_message=f"{message} (shards)")
            operations = [CommitOperationAdd(path, str(local[path]))
                          for path in (CARD_FILENAME, LICENSE_FILENAME, CONFIG_FILENAME) if path in local]
            head = None  # upload_large_folder moved main; commit on whatever it left
        else:
            operations = [CommitOperationAdd(path, str(file)) for path, file in local.items()]
        operations += [CommitOperationDelete(path) for path in stale]
        # 3. One commit on main: card, figure and shards together (parent_commit guards against a
        #    concurrent push moving main since we looked).
        info = api.create_commit(repo_id, operations, commit_message=message, repo_type=REPO_TYPE,
                                 revision=BRANCH, parent_commit=head,
                                 commit_description=f"Dataset version {version}, pushed by mmat push.")
        # 4. The tag names exactly that commit.
        try:
            api.create_tag(repo_id, tag=tag, revision=info.oid, repo_type=REPO_TYPE, tag_message=message)
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code == 409:
                raise TagExistsError(f"tag {tag} was created on {repo_id} by someone else during this push") from None
            raise
    except PushError:
        raise
    except HfHubHTTPError as err:
        raise PushError(_safe(f"push to {repo_id} failed: {err}", token)) from None
    except OSError as err:  # network errors (httpx errors are OSError subclasses or wrapped)
        raise PushError(_safe(f"push to {repo_id} failed: {type(err).__name__}: {err}", token)) from None
    except Exception as err:
        if type(err).__module__.startswith(("httpx", "httpcore", "huggingface_hub")):
            raise PushError(_safe(f"push to {repo_id} failed: {type(err).__name__}: {err}", token)) from None
        raise
    url = revision_url(api.endpoint, repo_id, tag)
    logger.info("pushed %s files to %s", len(local), url)
    return url


def show_card(
    repo_or_folder: str | Path,
    revision: str | None = None,
    *,
    token: str | None = None,
    rendered: bool = False,
    width: int | None = None,
    color: bool | None = None,
    endpoint: str | None = None,
) -> str:
    """The dataset card of a local folder (or README.md path) or of a Hub dataset repo at `revision`.

    Returns the card's Markdown (YAML front matter included), or with `rendered=True` the terminal
    rendering of `render_card_terminal` (what `mmat card` prints).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    path = Path(repo_or_folder)
    if path.is_dir() or path.is_file():
        if revision is not None:
            raise PushError(f"--revision applies to Hub repos; {path} is a local path")
        card = path / CARD_FILENAME if path.is_dir() else path
        if not card.is_file():
            raise PushError(f"no {CARD_FILENAME} in {path}; render it with write_card / `mmat generate`")
        text = card.read_text(encoding="utf-8")
    else:
        repo_id = str(repo_or_folder)
        if not _REPO_ID.match(repo_id):
            raise PushError(f"{repo_id} is neither a local folder nor a NAMESPACE/NAME repo id")
        api = HfApi(endpoint=endpoint, token=token)
        try:
            with tempfile.TemporaryDirectory(prefix="mmat-card-") as tmp:
                local = api.hf_hub_download(repo_id, CARD_FILENAME, repo_type=REPO_TYPE, revision=revision,
                                            local_dir=tmp)
                text = Path(local).read_text(encoding="utf-8")
        except RepositoryNotFoundError:
            raise PushError(f"dataset repo {repo_id} not found (or private and no access)") from None
        except RevisionNotFoundError:
            raise PushError(f"{repo_id} has no revision {revision}") from None
        except EntryNotFoundError:
            raise PushError(f"{repo_id}@{revision or BRANCH} has no {CARD_FILENAME}") from None
        except HfHubHTTPError as err:
            raise PushError(_safe(f"reading the card of {repo_id} failed: {err}", token)) from None
    return render_card_terminal(text, width=width, color=color, echo=False) if rendered else text


__all__ = ["PushError", "TagExistsError", "push_dataset", "show_card", "published_files", "revision_url", "FIGURE_PATH"]
