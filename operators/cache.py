"""On-disk operator result cache keyed by content, so a rerun performs zero operator executions.

Key = sha256 of (operator, backend, version, sha256 of every image's bytes, canonical JSON of args).
One small JSON file per entry, written atomically (`generation.atomic`: temp, fsync, rename): safe
under kill -9 and under several workers sharing the folder. An entry that does not read back as a
result (cut, garbled, another version's shape) is a miss: the operator runs again and rewrites it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from generation.atomic import write_atomic
from operators.images import LoadedImage
from operators.result import OperatorResult


class OperatorCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(operator: str, backend: str, version: str, images: Sequence[LoadedImage], args: dict[str, Any]) -> str:
        payload = json.dumps(
            {
                "operator": operator,
                "backend": backend,
                "version": version,
                "images": [im.sha256 for im in images],
                "args": args,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[OperatorResult]:
        try:
            return OperatorResult.model_validate_json(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def put(self, key: str, result: OperatorResult) -> None:
        """Store `result` under `key` durably (`generation.atomic`: a reader sees the whole entry or none,
        and a failed write, a full disk included, leaves no temp file)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, result.model_dump_json(), suffix=".json")
