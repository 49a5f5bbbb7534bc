"""Where a source's images may be read from, and what happens when they are somewhere else.

The rule `generation.sources.base.ImageFolder` applies to every image path a record names:

- **As written**, the path stays inside the source folder: relative, and no `..` that climbs above it
  (`images/../images/1.jpg` is fine, `../1.jpg` and `/data/1.jpg` are not). A record cannot point
  anywhere by itself.
- **On disk**, symlinks are followed, and the file they lead to must be inside one of: the source
  folder (for a Hub snapshot, its cached repo folder), the Hugging Face hub cache (`HF_HUB_CACHE`, else
  `HF_HOME/hub`, else `~/.cache/huggingface/hub`: a `huggingface_hub` snapshot or `hf download
  --local-dir` copy is symlinks into `blobs/` there), or a folder the source lists in `image_roots`
  (a `coco/` folder linked into a LLaVA-style layout: `image_roots: [/data/coco]`). The user decides
  where links may lead; a record does not.
- Anything else quarantines the record with a reason that names `image_roots` (and the folder the
  link leads to). `allow_outside_paths: true` lifts the rule.

When every record a source built was refused for leaving the folder, the layout, not the records, is
wrong: `refuse_wholesale` stops the run at the end of the planning pass (before any teacher call) with
one line (`SourceError`, exit 2) instead of quarantining the records one by one, which would also keep
them quarantined on the next run until `mmat retry`.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, TypeVar

from generation.schema import Quarantined, Sample
from generation.sources.records import SourceError

OUTSIDE_REASON = "image path outside the source folder"
REPEATED_ID = "RepeatedId"  # a repeat is refused for its id, not its image: it does not count either way
T = TypeVar("T")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, by the rules `huggingface_hub` uses (read at call time)."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return (Path(home).expanduser() / "hub").resolve()


def allowed_roots(kind: str, source_folder: Path, image_roots: Sequence[Path]) -> tuple[Path, ...]:
    """The real folders images of this source may be read from; `SourceError` when an `image_roots`
    entry is not a folder (a typo would otherwise quarantine every record that needs it)."""
    roots = [source_folder, hf_hub_cache()]
    for entry in image_roots:
        real = Path(entry).expanduser().resolve()
        if not real.is_dir():
            raise SourceError(f"{kind}: image_roots entry {entry} is not a folder; list the folders your image "
                              f"links lead to (e.g. image_roots: [/data/coco])")
        roots.append(real)
    return tuple(roots)


def written_outside(rel: str) -> Optional[str]:
    """Why `rel`, as written, leaves the source folder (absolute, or `..` climbing above it), or None."""
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        return "is absolute"
    if posixpath.normpath(rel.replace("\\", "/")).split("/")[0] == "..":
        return "climbs out of the source folder with .."
    return None


def written_reason(rel: str, why: str) -> str:
    return (f"{OUTSIDE_REASON}: {rel} {why}: write image paths relative to the source folder (a symlink in it may "
            f"lead to a folder listed in the source's `image_roots`), or set allow_outside_paths: true")


def resolved_reason(rel: str, real: Path) -> str:
    return (f"{OUTSIDE_REASON}: {rel} leads to {real.parent}, which is neither in the source folder, the Hugging "
            f"Face cache nor a folder listed in the source's `image_roots`: add that folder to `image_roots`")


def refuse_wholesale(kind: str, location: object, items: Iterable[T]) -> Iterator[T]:
    """`items` unchanged; after the last one, `SourceError` when at least one record was refused for
    leaving the folder and every other record built (repeats aside) was too (see the module docstring).
    Records not built (a rerun's finished ids) count neither way. A consumer that stops early never
    sees the error (nothing is checked before the end)."""
    refused = 0
    first: Optional[str] = None
    usable = False
    for item in items:
        if isinstance(item, Sample):
            usable = True
        elif isinstance(item, Quarantined) and item.error_type != REPEATED_ID:
            if item.reason.startswith(OUTSIDE_REASON):
                refused += 1
                detail = item.reason[len(OUTSIDE_REASON) + 2:]
                first = first or detail.split(", which")[0].split(": write")[0]
            else:
                usable = True  # refused for another reason: not the one layout problem
        yield item
    if refused and not usable:
        raise SourceError(f"{kind}: every record ({refused}) was refused because its image path leads outside the "
                          f"source folder {location}; list the folders the images live in under this source's "
                          f"`image_roots:` (first refused: {first})")
