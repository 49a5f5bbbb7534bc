"""What the viewer reads from a run's work folder (read-only): quarantine records and operator backends.

- Quarantine: the records `generation.checkpoint.Checkpoint.quarantined` reads (every worker's
  `quarantine*.jsonl`, the latest record per id), minus ids that have a row in the dataset (a retry
  that worked). Those samples have no row; the list shows them with stage, error type and reason.
- Backends, for rows written before rows recorded them (`steps[*].observations[*].backend`, which
  the view reads first): such a row's observations say which operator ran, not which backend
  (rapidocr, PaddleOCR, a template caption...). The run's operator cache (`<work>/operator-cache/results/**.json`, one
  `OperatorResult` per file) holds each result text with its backend, so `(operator, text) → backend`
  is exact for results this work folder produced. The index is built on first use from at most
  `MAX_CACHE_FILES` files; past that, or with no work folder (a Hub repo), a card says the backend was
  not recorded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger("mmat.viewer")

MAX_CACHE_FILES = 200_000


def _key(operator: str, text: str) -> tuple[str, str]:
    return operator, hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class WorkFolder:
    def __init__(self, path: Optional[Path], operator_cache: Optional[Path] = None) -> None:
        self.path = Path(path) if path else None
        self.operator_cache = operator_cache or (self.path / "operator-cache" if self.path else None)
        self._backends: Optional[dict[tuple[str, str], str]] = None
        self._lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return bool(self.path and self.path.is_dir())

    def quarantined(self, present: Callable[[Iterable[str]], set[str]]) -> list[dict[str, Any]]:
        """Quarantine records of samples with no row (`present(ids)` says which ids have one), by id."""
        if not self.exists:
            return []
        from generation.checkpoint import Checkpoint

        records = Checkpoint(self.path, readonly=True).quarantined(finished_ids=set())
        finished = present(records) if records else set()
        return [dict(r.__dict__) for sample_id, r in sorted(records.items()) if sample_id not in finished]

    def _load_backends(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        results = self.operator_cache / "results" if self.operator_cache else None
        if not results or not results.is_dir():
            return found
        for n, path in enumerate(results.glob("*/*.json")):
            if n >= MAX_CACHE_FILES:
                log.info("operator cache has more than %d results: backends beyond them show as not recorded",
                         MAX_CACHE_FILES)
                break
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found[_key(data["operator"], data["text"])] = data["backend"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def backend_of(self, operator: str, text: str) -> Optional[str]:
        with self._lock:
            if self._backends is None:
                self._backends = self._load_backends()
        return self._backends.get(_key(operator, text))
