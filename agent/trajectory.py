"""What one agent run produced: the dialogue as it happened, the answer, and what it cost.

`AgentResult.messages` is the conversation in the row schema's content-block form (DESIGN §6: image
blocks, no pixels), so an RR run that ended normally is an RR dialogue that
`generation.dialogue_format.parse_rr` reads back, and an ORR run an ORR one; a reply that needed the
format reminder is kept in `calls` (every model call, raw reply included), not in `messages`.
`to_dict()` is what `mmat agent --json` prints and what `mmat eval` checkpoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

# How a run ended.
ANSWERED = "answered"        # a parsed answer
UNPARSABLE = "unparsable"    # a reply that did not parse, twice in a row (the second after the reminder)
MAX_STEPS = "max_steps"      # RR: no `end` within --max-steps; the summary question was asked anyway
ERROR = "error"              # this question could not run (a bad image, an operator or request failure)
STATUSES = (ANSWERED, UNPARSABLE, MAX_STEPS, ERROR)


@dataclass
class Observation:
    """One operator or RAG result, as the model saw it (sanitised)."""

    operator: str
    text: str
    backend: str = ""
    cached: bool = False
    elapsed_s: float = 0.0


@dataclass
class AgentStep:
    """One RR assistant step and what the runtime did with it."""

    thought: str
    operators: list[str] = field(default_factory=list)   # as the model named them
    rag_query: Optional[str] = None
    signal: str = "continue"
    observations: list[Observation] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # operator the model named → why it did not run


@dataclass
class Completion:
    """A model's reply to one request, with what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: Optional[str] = None  # "length": cut at max_tokens


@dataclass
class ModelCall(Completion):
    """One request of a run: the reply, and what the runtime made of it."""

    parsed: bool = True
    retry: bool = False  # the second try of a reply that did not parse


@dataclass
class AgentResult:
    format: str
    question: str
    model: str = ""
    status: str = ANSWERED
    answer: Optional[str] = None
    error: Optional[str] = None
    thought: Optional[str] = None  # ORR: the one-turn reasoning
    steps: list[AgentStep] = field(default_factory=list)  # RR
    api_outputs: list[Observation] = field(default_factory=list)  # ORR: the prepended operator results
    skipped: dict[str, str] = field(default_factory=dict)  # ORR: operator → why it did not run
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    n_images: int = 0
    images_sent: bool = True  # False: a text-only model, which saw the images only through the operators
    latency_s: float = 0.0  # wall time of the whole run: model calls and operators

    @property
    def turns(self) -> int:
        """Model calls made (retries included)."""
        return len(self.calls)

    @property
    def tool_calls(self) -> int:
        """Operator and RAG results obtained (cache hits included: the model asked for them)."""
        return sum(len(step.observations) for step in self.steps) + len(self.api_outputs)

    @property
    def prompt_tokens(self) -> int:
        return sum(call.prompt_tokens for call in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(call.completion_tokens for call in self.calls)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def model_latency_s(self) -> float:
        return sum(call.latency_s for call in self.calls)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(turns=self.turns, tool_calls=self.tool_calls, prompt_tokens=self.prompt_tokens,
                    completion_tokens=self.completion_tokens, tokens=self.tokens,
                    model_latency_s=self.model_latency_s)
        return data
