"""The agent's two kinds of failure: one that dooms every question, and one that ends one question."""
from __future__ import annotations

from generation.errors import MmatError


class AgentError(MmatError, RuntimeError):
    """A problem the user must fix before anything can run (an endpoint that cannot be reached, a key
    it rejects, a model it does not serve, a missing package or file): one line that names the fix.
    `mmat agent` and `mmat eval` stop at the first one (the CLI's one red line for every `MmatError`)."""


class QuestionFailed(RuntimeError):
    """One question could not run (an unreadable image, an operator failure, a request the endpoint
    refused or that timed out); the question ends with status `error` and the reason, the run goes on."""
