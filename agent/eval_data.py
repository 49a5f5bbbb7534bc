"""The questions `mmat eval` asks: one per row of a dataset split, with its images and reference.

Our own dataset works as is (a folder written by `mmat generate`, or a Hub repo: columns `id`, `source`,
`images`, `question`, `answer`; a row is scored on its first question, the one the `question` and
`answer` columns hold). Any other dataset works by naming its columns (`Columns`): an image column
holding one image or a list (Hub `Image` features, `{"bytes", "path"}` dicts, or file paths, relative
to the data file's folder), a question, an answer, and optionally an id, a source (accuracy is
reported per source), the choices of a multiple-choice question and accepted aliases (InfoSeek's
`answer_eval` form), which the verifier (`generation.verify`) uses as it does in generation.

Images are read as stored (`Image(decode=False)`): the bytes the operators hash are the bytes
generation hashed, so a shared operator cache hits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from agent.errors import AgentError
from generation.errors import one_line

_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class Columns:
    image: str = "images"
    question: str = "question"
    answer: str = "answer"
    id: Optional[str] = "id"  # absent from the data: the row's index
    source: Optional[str] = "source"  # absent from the data: one source named after the dataset
    choices: Optional[str] = None
    aliases: Optional[str] = None


@dataclass
class EvalItem:
    id: str
    source: str
    question: str
    answer: str
    index: int  # the row, for its images
    choices: list[str] = field(default_factory=list)
    aliases: Any = None  # accepted answers / numeric ranges (generation.verify's `answer_eval`)


class EvalSet:
    """The items (light: no pixels) and, on demand, one item's image bytes."""

    def __init__(self, data: Any, columns: Columns, name: str, base_dir: Optional[Path] = None,
                 limit: Optional[int] = None) -> None:
        self.data = data
        self.columns = columns
        self.name = name
        self.base_dir = base_dir
        missing = [c for c in (columns.image, columns.question, columns.answer) if c not in data.column_names]
        if missing:
            raise AgentError(f"{name} has no column {', '.join(map(repr, missing))}; its columns are "
                             f"{', '.join(data.column_names)} (map them with --image-column, --question-column, "
                             f"--answer-column)")
        self.data = self._undecoded(data, columns.image)
        self.items = list(self._items(limit))

    @staticmethod
    def _undecoded(data: Any, column: str) -> Any:
        import datasets

        feature = data.features.get(column) if data.features else None
        if isinstance(feature, datasets.Image):
            return data.cast_column(column, datasets.Image(decode=False))
        inner = getattr(feature, "feature", None)
        if isinstance(inner, datasets.Image):
            return data.cast_column(column, datasets.List(datasets.Image(decode=False)))
        return data

    def _items(self, limit: Optional[int]) -> Iterator[EvalItem]:
        c = self.columns
        n = len(self.data) if limit is None else min(limit, len(self.data))
        view = self.data.select(range(n)) if n < len(self.data) else self.data
        ids, sources = self._column_of(view, c.id), self._column_of(view, c.source)
        choices, aliases = self._column_of(view, c.choices), self._column_of(view, c.aliases)
        questions, answers = view[c.question], view[c.answer]
        for i in range(n):
            yield EvalItem(
                id=str(ids[i]) if ids is not None else str(i),
                source=str(sources[i]) if sources is not None and sources[i] else self.name,
                question=str(questions[i] or ""), answer=str(answers[i] if answers[i] is not None else ""),
                index=i, choices=[str(x) for x in (choices[i] or [])] if choices is not None else [],
                aliases=aliases[i] if aliases is not None else None)

    @staticmethod
    def _column_of(view: Any, name: Optional[str]) -> Optional[list[Any]]:
        return view[name] if name and name in view.column_names else None

    def images(self, item: EvalItem) -> list[bytes]:
        value = self.data[item.index][self.columns.image]
        values = value if isinstance(value, list) else [value]
        return [self._bytes(v) for v in values if v is not None]

    def _bytes(self, value: Any) -> bytes:
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            path = Path(value)
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            return path.read_bytes()  # an unreadable one fails that question (the agent reports it)
        if hasattr(value, "save"):  # a decoded PIL image (a feature we could not cast)
            import io

            buffer = io.BytesIO()
            value.save(buffer, format="PNG")
            return buffer.getvalue()
        raise AgentError(f"column {self.columns.image!r} holds {type(value).__name__}, not images")


def _load_data_file(path: Path) -> Any:
    """One .jsonl/.json/.parquet/.csv file as a dataset. `datasets` reports an empty file as a bare
    StopIteration and a file its builder cannot parse as DatasetGenerationError (the cause chained
    under it); both are the user's file, so both become one line naming it and what is wrong."""
    import datasets

    if path.stat().st_size == 0:
        raise AgentError(f"{path}: the file is empty; pass a {path.suffix} file with one row per question")
    from datasets.utils import logging as ds_logging

    verbosity, bars = ds_logging.get_verbosity(), datasets.is_progress_bar_enabled()
    ds_logging.set_verbosity(ds_logging.CRITICAL)  # its own "Failed to load JSON ..." line: ours says it once
    datasets.disable_progress_bars()  # a one-file "Generating train split" bar is noise
    try:
        data = datasets.load_dataset(_FILE_BUILDERS[path.suffix.lower()], data_files=str(path), split="train")
    except (StopIteration, datasets.exceptions.DatasetGenerationError) as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        reason = one_line(str(cause).splitlines()[0] if str(cause).strip() else type(cause).__name__, 300)
        raise AgentError(f"{path}: not a readable {path.suffix} dataset file ({reason})") from None
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
    if len(data) == 0:
        raise AgentError(f"{path}: the file holds no rows")
    return data


def load_eval_set(dataset: str, config: Optional[str] = None, split: str = "validation",
                  revision: Optional[str] = None, columns: Optional[Columns] = None,
                  limit: Optional[int] = None) -> EvalSet:
    """A dataset folder, a Hub repo id, or one data file (.jsonl/.json/.parquet/.csv)."""
    import datasets

    columns = columns or Columns()
    path = Path(dataset).expanduser()
    try:
        if path.is_file() and path.suffix.lower() in _FILE_BUILDERS:
            data = _load_data_file(path)
            return EvalSet(data, columns, path.stem, base_dir=path.parent, limit=limit)
        data = datasets.load_dataset(dataset, config, split=split, revision=revision)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        # OSError: a missing file, and the ConnectionError of a Hub repo that cannot be reached (offline)
        reason = one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)
        hint = " (a Hub repo needs the network: offline, pass a local dataset folder or data file)" if isinstance(
            exc, ConnectionError) else ""
        raise AgentError(f"cannot load {dataset!r} (config {config!r}, split {split!r}): {reason}{hint}") from None
    name = path.name if path.exists() else dataset.rsplit("/", 1)[-1]
    return EvalSet(data, columns, name, base_dir=path if path.is_dir() else None, limit=limit)
