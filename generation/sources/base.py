"""What every source adapter shares: the config, sample ids, the response-style constraint, images, files.

Adapters are small readers of one native layout each (DESIGN §2). Everything that must look the
same across sources lives here so the five adapters cannot drift apart: how ids are built, when the
paper's response-style constraint is appended, which QA pairs are too degenerate to keep, how a bad
image or a missing field becomes a `Quarantined` (one record lost, the run goes on), and how a Hub id
becomes local files.

Two guarantees live here:
- **Nothing outside the source folder is read, unless the user said where.** `ImageFolder.file` refuses
  an image path that leaves the folder as written (absolute, `..` above it) and follows symlinks only
  into the source folder, the Hugging Face cache or a folder in the source's `image_roots`
  (`generation.sources.image_paths` has the rule); anything else is quarantined with the reason "image
  path outside the source folder: ..." naming `image_roots`, and a source whose every record is refused
  so stops the run at the start. `allow_outside_paths: true` lifts the rule (the folder is logged once).
- **A bad byte costs one record.** `iter_jsonl` and `iter_json_container` (defined in
  `generation.sources.records`, re-exported here with `SourceError` and `RecordError`) decode each
  record on its own: invalid UTF-8, a line that is not a JSON object, or a file cut off mid-record
  becomes one error for that record, never an exception for the whole source.

Why one module of ~460 lines: it is the one contract every adapter imports whole (`from .base import ...`),
and its pieces (ids, quarantine, question text, images, Hub files) are each a few dozen lines; split, an
adapter would read five modules to know the rules it follows.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional, Sequence, Union

from pydantic import Field, model_validator

from generation.answers import LETTERS, normalise_answer
from generation.schema import ImageRef, Quarantined, Sample
from generation.strict import StrictModel
from generation.sources.records import (
    RecordError,
    SourceError,
    field_text,
    id_text,
    iter_json_container,
    iter_jsonl,
    json_kind,
    parsed,
)
from generation.sources.image_paths import (
    OUTSIDE_REASON, allowed_roots, resolved_reason, written_outside, written_reason,
)
from generation.sources.record_index import RecordIndex, indexed_json_container, indexed_jsonl
from generation.sources.instructions import (
    BREVITY_SUFFIXES,
    LEADING_INSTRUCTIONS,
    LETTER_SUFFIXES,
    MULTIPLE_CHOICE_PROMPT,
    SHORT_ANSWER_PROMPT,
    YES_NO_INSTRUCTIONS,
    ends_with,
    is_table_dump_request,
    starts_with,
    strip_suffixes,
)
from operators.images import ImageDecodeError, decode_rgb

log = logging.getLogger("mmat.sources")

# The one list of sources, in the order the dataset's configs, cards and viewer show them (`mmat_1m.SOURCES`).
SOURCE_IDS = ("visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek")
SourceKind = Literal[SOURCE_IDS]  # type: ignore[valid-type]
STAGE = "foundation"
# The degenerate-QA filters (`SourceConfig.drop_qas`):
#   empty_answer  a QA pair whose answer is empty (after the upstream's decorations are removed)
#   table_dump    a "parse the full table" request whose answer is the table as a dict (Cauldron ROBUT/HiTab)
QAFilter = Literal["empty_answer", "table_dump"]
DEFAULT_QA_FILTERS: tuple[str, ...] = ("empty_answer", "table_dump")


class SourceConfig(StrictModel):
    """Where one source's native data lives and how much of it to read."""

    kind: SourceKind
    path: Optional[Path] = None  # a local folder in the upstream's native layout
    hub_id: Optional[str] = None  # or a Hugging Face dataset repo holding that layout
    hub_config: Optional[str] = None
    hub_split: Optional[str] = None
    revision: Optional[str] = None
    subsets: Optional[list[str]] = None  # keep only these subsets (Cauldron configs, Visual CoT datasets, ...)
    limit: Optional[int] = Field(default=None, ge=0)  # at most this many records (samples + quarantined)
    # Decoding every image at the foundation stage costs time but turns a broken file into one
    # quarantined record here instead of a crash in an operator later.
    validate_images: bool = True
    # Image paths must stay inside the source folder; `true` lets them point anywhere (an
    # `id2image.jsonl` with absolute paths to your OVEN copy, say). The resolved folder is logged.
    allow_outside_paths: bool = False
    # Folders image symlinks may lead to besides the source folder and the Hugging Face cache (a `coco/`
    # linked into a LLaVA-style layout: `[/data/coco]`). Relative entries are relative to the config file.
    image_roots: list[Path] = Field(default_factory=list)
    # QA pairs dropped from a dialogue (the row keeps the others; rows count them in
    # `meta.dropped_qas`). `[]` keeps every pair.
    drop_qas: list[QAFilter] = Field(default_factory=lambda: list(DEFAULT_QA_FILTERS))

    @model_validator(mode="after")
    def _exactly_one_location(self) -> "SourceConfig":
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of `path` (local folder) or `hub_id` (Hub dataset)")
        if self.hub_id is None and (self.hub_config or self.hub_split or self.revision):
            raise ValueError("`hub_config`, `hub_split` and `revision` only apply with `hub_id`")
        return self


class Deferred(NamedTuple):
    """A record whose id is known and whose Sample is built only when it is wanted (`guarded(id,
    build)` in `generation.sources.read_source`): a rerun that skips finished ids never decodes their
    fields or resolves their image paths. `build` runs before the adapter reads its next record."""

    id: str
    build: Callable[[], Sample]


class Located(NamedTuple):
    """What an adapter yields: a Sample (deferred), or a Quarantined for a record it could not read,
    and where its record is in the native files (`"problems_train.json: pid 137"`, `"train.jsonl:
    line 12"`), so a repeated id can name both."""

    where: str
    item: Union[Deferred, Sample, Quarantined]


# ---------------------------------------------------------------------------------------------
# Ids and small text helpers
# ---------------------------------------------------------------------------------------------
def sample_id(source: str, subset: str, native_id: Any) -> str:
    """Stable id `"{source}/{subset}/{native_id}"`: the split hash and the caches key on it."""
    return f"{source}/{subset}/{native_id}"


def subset_of(sample_id_: str) -> str:
    parts = sample_id_.split("/")
    return parts[1] if len(parts) > 2 else ""


def quarantine(sid: str, reason: str, exc: BaseException | None = None) -> Quarantined:
    """A bad record, as the runner records it: the stage, one line of reason, the error class."""
    reason = " ".join(str(reason).split())
    return Quarantined(sid, STAGE, reason, type(exc).__name__ if exc else "InvalidRecord")


def require(record: Any, field: str, sid: str, where: str = "") -> Any:
    """A required native field, or a Quarantined naming it (None, "" and [] count as missing).

    `where` locates nested records in the reason, e.g. "texts[1]: missing field 'user'".
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(record, dict):
        raise quarantine(sid, f"{prefix}record is {json_kind(record)}, not an object")
    value = record.get(field)
    if value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip()):
        raise quarantine(sid, f"{prefix}missing field '{field}'", KeyError(field))
    return value


def usable(value: Any, sid: str) -> Any:
    """A decoded record, or (for a `RecordError`: bad bytes, not JSON, cut off) its quarantine, raised."""
    if isinstance(value, RecordError):
        raise quarantine(sid, str(value), value)
    return value


def guarded(sid: str, build: Callable[[], Sample]) -> Sample | Quarantined:
    """One record in, one Sample or one Quarantined out, never an exception: a malformed record
    (wrong types, missing keys deep inside) costs that record only."""
    try:
        return build()
    except Quarantined as q:
        return q
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        return quarantine(sid, f"malformed record: {type(exc).__name__}: {exc}", exc)


_NUMBER = re.compile(r"^[-+]?[$€£]?\s*(\d[\d,]*(\.\d+)?|\.\d+|\d+\s*/\s*\d+)\s*(%|°)?$")


def is_numeric(answer: str) -> bool:
    """'42', '1,200', '18.60', '$3.50', '68%', '70°', '3/4' are numeric; '2.4 million', 'INV-20417' are not."""
    return bool(_NUMBER.match(answer.strip()))


def format_choices(choices: Sequence[str]) -> str:
    """LLaVA's multiple-choice layout: one `A. text` line per option."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])[.):]\s*(.+?)\s*$")
# the options line only: an instruction may follow on the next line ("Answer with the option's letter …")
_INLINE_OPTIONS = re.compile(r"(?:Options|Choices)\s*:\s*(\(A\)[^\n]*)")


def parse_listed_choices(text_: str) -> list[str]:
    """Options already written into a question, in the layouts LLaVA-CoT and the Cauldron use.

    Handles one option per line (`A. x`, `A: x`, `(A) x`) and ScienceQA's inline
    `Options: (A) x (B) y`. Letters must run A, B, C, ... from the first option, so a stray line
    that happens to start with "A." is not taken for a list.
    """
    m = _INLINE_OPTIONS.search(text_)
    if m and "\n" not in m.group(1).strip():
        parts = re.split(r"\(([A-H])\)\s*", m.group(1))
        letters, values = parts[1::2], [p.strip() for p in parts[2::2]]
        if letters == list(LETTERS[: len(letters)]) and len(values) >= 2 and all(values):
            return values
    found: list[str] = []
    for line in text_.splitlines():
        lm = _CHOICE_LINE.match(line)
        if lm and lm.group(1) == LETTERS[len(found)]:
            found.append(lm.group(2))
        elif found:
            break
    return found if len(found) >= 2 else []


def choice_letter(answer: str, choices: Sequence[str]) -> Optional[str]:
    """The option letter of `answer`: the option's text, compared in the one normal form of
    `generation.answers` (so `2:10 P.M.` finds `2:10 P.M.`), or else a letter already (`B`, `(B)`, `B.`)."""
    key = normalise_answer(answer)
    for i, c in enumerate(choices):
        if key and key == normalise_answer(c):
            return LETTERS[i]
    letter = re.fullmatch(r"\(?([A-Za-z])\)?\.?", answer.strip())
    if letter and letter.group(1).upper() in LETTERS[: len(choices)]:
        return letter.group(1).upper()
    return None


# ---------------------------------------------------------------------------------------------
# The paper's response-style constraint (the phrases: generation.sources.instructions)
# ---------------------------------------------------------------------------------------------
# MMAT-1M follows LLaVA-1.5: questions whose reference answer is short get a format instruction so
# the model learns to answer them tersely. Our rule for "short" (the paper does not define it): at
# most 5 words and 40 characters, one line, and the prompt is a question, not an open-ended request
# such as "Describe this chart."
SHORT_MAX_WORDS = 5
SHORT_MAX_CHARS = 40
_OPEN_ENDED = re.compile(r"^\s*(describe|summari[sz]e|explain|write|caption|provide|generate|give a)\b", re.I)


def is_short_answer(question: str, answer: str) -> bool:
    a = answer.strip()
    return (bool(a) and "\n" not in a and len(a) <= SHORT_MAX_CHARS and len(a.split()) <= SHORT_MAX_WORDS
            and not _OPEN_ENDED.match(question))


def add_response_constraint(question: str, answer: str, choices: Sequence[str] = ()) -> str:
    """Append the paper's response-style instruction when the answer is a letter or short, exactly once.

    A native brevity or letter instruction at the end of the question is replaced by ours; a yes/no
    instruction, or an instruction that opens the question, is kept and nothing is appended.
    Idempotent: applying it twice gives the same question.
    """
    q = question.strip()
    if starts_with(q, LEADING_INSTRUCTIONS) or (not choices and ends_with(q, YES_NO_INSTRUCTIONS)):
        return q
    if choices:
        return strip_suffixes(q, LETTER_SUFFIXES + BREVITY_SUFFIXES) + "\n" + MULTIPLE_CHOICE_PROMPT
    base = strip_suffixes(q, BREVITY_SUFFIXES)
    if is_short_answer(base, answer):
        return base + "\n" + SHORT_ANSWER_PROMPT
    return q


def qa_meta(answer: str, *, math: bool = False, **extra: Any) -> dict[str, Any]:
    """Per-question meta with the `math` flag the reflection stage reads (math-like or numeric)."""
    meta = {k: v for k, v in extra.items() if v is not None}
    meta["math"] = bool(math or is_numeric(answer))
    return meta


# ---------------------------------------------------------------------------------------------
# Degenerate QA pairs
# ---------------------------------------------------------------------------------------------
def degenerate_reason(question: str, answer: str, filters: Sequence[str]) -> Optional[str]:
    """Why a QA pair should be dropped from its dialogue under `filters` (`SourceConfig.drop_qas`),
    or None to keep it."""
    if "empty_answer" in filters and not answer.strip():
        return "empty_answer"
    if "table_dump" in filters and (is_table_dump_request(question) or _is_dict_dump(answer)):
        return "table_dump"
    return None


def dropped_meta(dropped: Sequence[str]) -> dict[str, Any]:
    """Sample meta recording the QA pairs a filter dropped (rows carry the count as `meta.dropped_qas`)."""
    return {"dropped_qas": len(dropped), "dropped_qa_reasons": sorted(dropped)} if dropped else {"dropped_qas": 0}


def all_dropped(sid: str, dropped: Sequence[str]) -> Quarantined:
    """The dialogue had QA pairs, and the filters dropped every one."""
    return quarantine(sid, f"no QA pair left: the drop_qas filters dropped all {len(dropped)} "
                           f"({', '.join(sorted(set(dropped)))})", ValueError("no QA pair"))


def _is_dict_dump(answer: str) -> bool:
    """`{'header': [...], 'rows': [[...]]}`: a table written out as a Python or JSON dict (the shape of
    the ROBUT/HiTab `str(example["table"])`); other JSON answers (an extraction task's) are answers."""
    text = answer.strip()
    if not (text.startswith("{") and "header" in text and "rows" in text):
        return False
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
        return isinstance(value, dict) and {"header", "rows"} <= set(value)
    return False


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def check_image_bytes(sid: str, data: bytes, what: str = "image") -> None:
    try:
        decode_rgb(data)
    except ImageDecodeError as exc:
        raise quarantine(sid, f"{what}: {exc}", exc) from None


_MAX_FOLDERS = 4096  # real paths of image folders kept by an `ImageFolder` (a few per source, usually)


@dataclass(frozen=True)
class ImageFolder:
    """The source folder images are read from, and the rule that keeps every read inside it."""

    root: Path  # resolved; relative image paths start here
    validate: bool = True
    allow_outside: bool = False
    boundary: Optional[Path] = None  # the source's own folder every read may use (default: root)
    allowed: tuple = ()  # real folders reads may lead to: the boundary, the HF cache, `image_roots` (`of`)
    # relative folder -> its real path (`_real`); emptied when it reaches _MAX_FOLDERS entries
    _folders: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, cfg: SourceConfig, root: Path) -> "ImageFolder":
        resolved = Path(root).resolve()
        boundary = resolved
        if cfg.hub_id is not None and resolved.parent.name == "snapshots":
            # a Hub snapshot's files are symlinks into the cached repo's blobs/: that repo folder is the source
            boundary = resolved.parent.parent
        if cfg.allow_outside_paths:
            log.info("%s: allow_outside_paths is on: image paths may leave the source folder %s", cfg.kind, resolved)
        allowed = allowed_roots(cfg.kind, boundary, cfg.image_roots)
        return cls(resolved, cfg.validate_images, cfg.allow_outside_paths, boundary, allowed)

    def _inside(self, path: Path) -> bool:
        return self.allow_outside or any(path.is_relative_to(r) for r in self.allowed or (self.boundary or self.root,))

    def resolve(self, sid: str, rel: Any) -> Path:
        """`rel` (relative to the folder) as a real path, or Quarantined when it is missing, leaves the
        folder as written (absolute, `..` above it) or on disk (a symlink to a folder not allowed, see
        `generation.sources.image_paths`), or is not a file."""
        if not isinstance(rel, str) or not rel.strip():
            raise quarantine(sid, "missing image path", KeyError("image"))
        if "\x00" in rel:
            raise quarantine(sid, "image path contains a NUL byte", ValueError(rel))
        why = None if self.allow_outside else written_outside(rel)
        if why:
            raise quarantine(sid, written_reason(rel, why), PermissionError(rel))
        path = self._real(Path(rel))
        if not self._inside(path):
            raise quarantine(sid, resolved_reason(rel, path), PermissionError(rel))
        if not path.is_file():
            raise quarantine(sid, f"image file not found: {rel}", FileNotFoundError(rel))
        return path

    def file(self, sid: str, rel: Any) -> ImageRef:
        """An on-disk image as `ImageRef(path=...)` (the resolved path: what was checked is what is
        read), or Quarantined when it is missing, outside the folder, or undecodable."""
        path = self.resolve(sid, rel)
        if self.validate:
            check_image_bytes(sid, path.read_bytes(), str(rel))
        return ImageRef(path=str(path))

    def exists(self, rel: str) -> bool:
        """Whether `rel` names a file inside the folder (no quarantine: for probing candidate layouts)."""
        if not self.allow_outside and written_outside(rel):
            return False
        path = self._real(Path(rel))
        return self._inside(path) and path.is_file()

    def _real(self, given: Path) -> Path:
        """`(root / given).resolve()`, with the real path of `given`'s folder resolved once per folder.

        Exact: a real path is resolved component by component, so the real path of `folder/name` is that
        of (the real path of `folder`)/`name`, which is itself unless `name` is a symlink (then it is
        resolved whole, as before). Why: resolving every component of every image path (an `lstat` per
        component) was a third of reading a LLaVA-CoT record, whose images share a few folders. A folder
        swapped for a symlink while this pass runs is not seen until the next pass; a file is read by
        its path later anyway, so swapping folders under a running engine was never guarded against."""
        name = given.name
        if name in ("", ".", ".."):
            return (self.root / given).resolve()
        folder = self._folders.get(given.parent)
        if folder is None:
            if len(self._folders) >= _MAX_FOLDERS:
                self._folders.clear()
            folder = self._folders[given.parent] = (self.root / given.parent).resolve()
        candidate = folder / name
        try:
            if stat.S_ISLNK(os.lstat(candidate).st_mode):
                return candidate.resolve()
        except OSError:  # missing (resolve keeps a missing name as it is), or unreadable: the file check says so
            pass
        return candidate


def image_from_bytes(sid: str, data: Optional[bytes], validate: bool = True, what: str = "image") -> ImageRef:
    """Image bytes from a parquet cell as `ImageRef(data=...)`, or Quarantined."""
    if not data:
        raise quarantine(sid, f"{what}: empty image (0 bytes)", ImageDecodeError("empty"))
    if validate:
        check_image_bytes(sid, data, what)
    return ImageRef(data=data)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def local_root(cfg: SourceConfig, allow_patterns: Optional[list[str]] = None) -> Path:
    """The folder to read: `cfg.path`, or a snapshot of `cfg.hub_id` in the local HF cache."""
    if cfg.path is not None:
        root = Path(cfg.path).expanduser()
        if not root.is_dir():
            raise SourceError(f"{cfg.kind}: source folder not found: {root} "
                              "(set `path:` to a folder in the native layout)")
        return root
    return hub_snapshot(cfg, allow_patterns)


def hub_snapshot(cfg: SourceConfig, allow_patterns: Optional[list[str]] = None) -> Path:
    """Download (or reuse) the Hub dataset repo's files; one clear line when that is impossible."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(cfg.hub_id, repo_type="dataset", revision=cfg.revision,
                                      allow_patterns=allow_patterns))
    except Exception as exc:  # offline, gated, missing repo: all end the same way for the user
        raise hub_error(cfg, exc) from None


def hub_error(cfg: SourceConfig, exc: BaseException) -> SourceError:
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return SourceError(
        f"{cfg.kind}: cannot read Hub dataset '{cfg.hub_id}' ({type(exc).__name__}: {first}); this machine may be "
        f"offline: download it where there is network and set `path:` to the local copy, or unset HF_HUB_OFFLINE")


# MULTIPLE_CHOICE_PROMPT and SHORT_ANSWER_PROMPT are re-exported: adapters and tests import them from here.
__all__ = [
    "DEFAULT_QA_FILTERS", "ImageFolder", "Located", "MULTIPLE_CHOICE_PROMPT", "RecordError", "SHORT_ANSWER_PROMPT",
    "SOURCE_IDS", "SourceConfig", "SourceError", "add_response_constraint", "all_dropped", "choice_letter",
    "Deferred", "degenerate_reason", "dropped_meta", "field_text", "format_choices", "guarded", "id_text", "is_numeric",
    "indexed_json_container", "indexed_jsonl", "iter_json_container", "iter_jsonl", "RecordIndex", "usable", "local_root", "parse_listed_choices", "parsed", "qa_meta", "quarantine",
    "require", "sample_id", "subset_of",
]
