"""What every source adapter shares: the config, sample ids, the response-style constraint, images.

Adapters are small readers of one native layout each (DESIGN §2). Everything that must look the
same across sources lives here so the five adapters cannot drift apart: how ids are built, when the
paper's response-style constraint is appended, how a bad image or a missing field becomes a
`Quarantined` (one record lost, the run goes on), and how a Hub id becomes local files.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generation.schema import ImageRef, Quarantined, Sample
from operators.images import ImageDecodeError, decode_rgb

SOURCE_IDS = ("visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek")
SourceKind = Literal["visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek"]
STAGE = "foundation"


class SourceError(ValueError):
    """The source as a whole cannot be read (missing folder, unreadable index file, Hub unreachable).

    Unlike a bad record, this stops the run: the message is one line that names the fix.
    """


class SourceConfig(BaseModel):
    """Where one source's native data lives and how much of it to read."""

    model_config = ConfigDict(extra="forbid")

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

    @model_validator(mode="after")
    def _exactly_one_location(self) -> "SourceConfig":
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of `path` (local folder) or `hub_id` (Hub dataset)")
        if self.hub_id is None and (self.hub_config or self.hub_split or self.revision):
            raise ValueError("`hub_config`, `hub_split` and `revision` only apply with `hub_id`")
        return self


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
        raise quarantine(sid, f"{prefix}record is {type(record).__name__}, not an object")
    value = record.get(field)
    if value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip()):
        raise quarantine(sid, f"{prefix}missing field '{field}'", KeyError(field))
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


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NUMBER = re.compile(r"^[-+]?[$€£]?\s*(\d[\d,]*(\.\d+)?|\.\d+|\d+\s*/\s*\d+)\s*(%|°)?$")


def is_numeric(answer: str) -> bool:
    """'42', '1,200', '18.60', '$3.50', '68%', '70°', '3/4' are numeric; '2.4 million', 'INV-20417' are not."""
    return bool(_NUMBER.match(answer.strip()))


def format_choices(choices: Sequence[str]) -> str:
    """LLaVA's multiple-choice layout: one `A. text` line per option."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])[.):]\s*(.+?)\s*$")
_INLINE_OPTIONS = re.compile(r"(?:Options|Choices)\s*:\s*(\(A\).*)$", re.S)


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
    """The option letter of `answer`: given as a letter already, or as the option's text."""
    a = answer.strip().rstrip(".")
    if len(a) == 1 and a.upper() in LETTERS[: len(choices)]:
        return a.upper()
    for i, c in enumerate(choices):
        if a.lower() == c.strip().lower():
            return LETTERS[i]
    return None


# ---------------------------------------------------------------------------------------------
# The paper's response-style constraint
# ---------------------------------------------------------------------------------------------
# MMAT-1M follows LLaVA-1.5: questions whose reference answer is short get a format instruction so
# the model learns to answer them tersely. The phrases are LLaVA-1.5's.
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
# Our rule for "short" (the paper does not define it): at most 5 words and 40 characters, one line,
# and the prompt is a question, not an open-ended request such as "Describe this chart."
SHORT_MAX_WORDS = 5
SHORT_MAX_CHARS = 40
_OPEN_ENDED = re.compile(r"^\s*(describe|summari[sz]e|explain|write|caption|provide|generate|give a)\b", re.I)
# Native instructions that say the same thing as ours are replaced rather than doubled. Which exact
# phrases each upstream uses is not confirmed beyond the ones seen in public samples.
_EQUIVALENT_SHORT = ("Answer briefly.", "Answer with a single word.", "Answer using a single word or phrase.",
                     SHORT_ANSWER_PROMPT)
_EQUIVALENT_MC = ("Answer with the letter.", "Answer with the option letter.", MULTIPLE_CHOICE_PROMPT)


def is_short_answer(question: str, answer: str) -> bool:
    a = answer.strip()
    return (bool(a) and "\n" not in a and len(a) <= SHORT_MAX_CHARS and len(a.split()) <= SHORT_MAX_WORDS
            and not _OPEN_ENDED.match(question))


def _strip_suffix(question: str, phrases: Sequence[str]) -> str:
    q = question.rstrip()
    for p in phrases:
        if q.lower().endswith(p.lower()):
            return q[: -len(p)].rstrip()
    return q


def add_response_constraint(question: str, answer: str, choices: Sequence[str] = ()) -> str:
    """Append the paper's response-style instruction when the answer is a letter or short.

    Idempotent: a question that already ends with the same instruction (ours or a native
    equivalent) ends with exactly one copy of ours.
    """
    if choices:
        return _strip_suffix(_strip_suffix(question, _EQUIVALENT_MC), _EQUIVALENT_SHORT) + "\n" + MULTIPLE_CHOICE_PROMPT
    base = _strip_suffix(question, _EQUIVALENT_SHORT)
    if is_short_answer(base, answer):
        return base + "\n" + SHORT_ANSWER_PROMPT
    return question.rstrip()


def qa_meta(answer: str, *, math: bool = False, **extra: Any) -> dict[str, Any]:
    """Per-question meta with the `math` flag the reflection stage reads (math-like or numeric)."""
    meta = {k: v for k, v in extra.items() if v is not None}
    meta["math"] = bool(math or is_numeric(answer))
    return meta


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def check_image_bytes(sid: str, data: bytes, what: str = "image") -> None:
    try:
        decode_rgb(data)
    except ImageDecodeError as exc:
        raise quarantine(sid, f"{what}: {exc}", exc) from None


def image_from_file(sid: str, root: Path, rel: str, validate: bool = True) -> ImageRef:
    """An on-disk image as `ImageRef(path=...)`, or Quarantined when it is missing or undecodable."""
    if not isinstance(rel, str) or not rel.strip():
        raise quarantine(sid, "missing image path", KeyError("image"))
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if not path.is_file():
        raise quarantine(sid, f"image file not found: {rel}", FileNotFoundError(rel))
    if validate:
        check_image_bytes(sid, path.read_bytes(), rel)
    return ImageRef(path=str(path))


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


def read_json(path: Path, kind: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{kind}: file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"{kind}: cannot parse {path}: {exc}") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or the ValueError) per non-blank line: one bad line is one record."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError as exc:
                yield n, exc
