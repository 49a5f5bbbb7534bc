"""One hand-made mutant, applied and reverted, and a module's kill rate: what the mutant scripts share.

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


def kill_rates(tree: Path, table: dict, wanted: list[str], extra_tests: list[str],
               run_tests: Callable[[Path, list[str]], int]) -> None:
    """Each wanted module's mutants (`table[module] = (test files, [(path, old, new, what)])`) tried one at a
    time in `tree` against the module's tests (plus `extra_tests` present there); a line per mutant and the
    module's kill rate. The unmutated tests must pass first, else the module is skipped."""
    import time

    for module in wanted:
        tests, mutants = table[module]
        tests = tests + [t for t in extra_tests if (tree / t).exists()]
        if run_tests(tree, tests) != 0:
            print(f"{module}: the unmutated tests fail; skipped", flush=True)
            continue
        killed = applied = 0
        for path, old, new, what in mutants:
            start = time.perf_counter()
            dead = try_mutant(tree / path, old, new, lambda: run_tests(tree, tests) != 0)
            if dead is None:
                print(f"  {module}: does not apply ({(tree / path).read_text().count(old)} matches): {what}", flush=True)
                continue
            applied += 1
            killed += dead
            print(f"  {module}: {'killed  ' if dead else 'SURVIVED'} {what} ({time.perf_counter() - start:.1f} s)",
                  flush=True)
        print(f"{module}: {killed}/{applied} killed ({100 * killed / max(applied, 1):.0f} %) with {', '.join(tests)}",
              flush=True)
