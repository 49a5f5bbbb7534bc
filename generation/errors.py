"""Errors a user can fix, and the one-line rule every message follows.

`MmatError` is the base of every error whose message tells the user what to change: a config key, a
missing backend or package, a key the teacher rejects, an unwritable folder, a Hub tag that exists.
The command line catches this one type, prints the message as one red line and exits non-zero, never
with a stack trace. The errors that quarantine one sample (`OperatorError`, `TeacherError`) derive
from it too: when one ends a whole command (a dry run, a missing backend) it is the user's to fix.

`one_line(text, limit)` is how such a message, or any text quoted into one, becomes a single line:
whitespace collapsed to single spaces, cut at `limit` characters with an ellipsis.
"""
from __future__ import annotations

from typing import Iterable, Optional


class MmatError(Exception):
    """Something the user can fix; the message is one line that says what and how."""


def one_line(text: object, limit: Optional[int] = None) -> str:
    """`text` on one line (whitespace collapsed), at most `limit` characters ("…" marks a cut)."""
    line = " ".join(str(text).split())
    if limit is not None and len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def did_you_mean(word: object, options: Iterable[object]) -> str:
    """"; did you mean 'x'?" for the option closest to `word` (difflib), or "" when none is close."""
    import difflib

    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""
