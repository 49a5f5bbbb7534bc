"""The two errors every operator speaks. Kept apart so `images` and `base` can both raise them."""
from __future__ import annotations

from generation.errors import MmatError


class OperatorError(MmatError):
    """One clear reason why an operator cannot handle this input; quarantines the sample."""


class BackendUnavailable(OperatorError):
    """The backend cannot run on this machine (missing package, weights, key or network).

    The message always says how to fix it."""
