"""On-disk operator result cache keyed by content, so a rerun performs zero operator executions.

Key = sha256 of (operator, backend, version, sha256 of every image's bytes, canonical JSON of args).
One small JSON file per entry, written atomically (temp + rename): safe under kill -9 and under
several workers sharing the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from operators.base import Backend, OperatorResult
    from operators.images import LoadedImage


class OperatorCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(backend: "Backend", images: Sequence["LoadedImage"], args: dict[str, Any]) -> str:
        payload = json.dumps(
            {
                "operator": backend.operator,
                "backend": backend.name,
                "version": backend.version,
                "images": [im.sha256 for im in images],
                "args": args,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional["OperatorResult"]:
        from operators.base import OperatorResult

        path = self._path(key)
        try:
            text = path.read_text()
            result = OperatorResult.model_validate_json(text)
        except (FileNotFoundError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return result

    def put(self, key: str, result: "OperatorResult") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            fh.write(result.model_dump_json())
        os.replace(tmp, path)
