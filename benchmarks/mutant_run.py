"""One hand-made mutant, applied and reverted: what `mutants_text.py` and `mutants_workfolder.py` share.

A mutant is one exact text replacement in one file; it applies only where the text occurs exactly once
(a mutant whose text moved is reported, never counted). The file is restored whatever the tests do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional


def try_mutant(file: Path, old: str, new: str, tests_fail: Callable[[], bool]) -> Optional[bool]:
    """Replace `old` by `new` in `file`, call `tests_fail` (True: the mutant is killed), restore the file.
    None when `old` does not occur exactly once (`file.read_text().count(old)` says how often)."""
    original = file.read_text()
    if original.count(old) != 1:
        return None
    file.write_text(original.replace(old, new))
    try:
        return tests_fail()
    finally:
        file.write_text(original)
