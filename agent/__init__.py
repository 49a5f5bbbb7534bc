"""Run a model tuned on mmat-1m as an agent (`mmat agent`) and measure it (`mmat eval`).

    from agent import Agent
    with Agent.open(endpoint="http://localhost:8000/v1", model="mmat-rr", format="rr") as agent:
        result = agent.run_sync(["photo.jpg"], "What does the sign say?")

Modules, one job each: `core` (the `Agent`), `rr` (the RR loop), `orr` (the ORR one-shot), `plain` (the
baseline), `conversation` (messages, calls, the one retry), `endpoint` (the OpenAI-compatible client),
`local_model` (transformers), `serving` (which of the two, and a GGUF served by llama.cpp), `tools`
(operators and RAG as generation runs them), `trajectory` (what a run produced), `render` (terminal
output), `eval_data` / `eval_store` / `evaluate` (`mmat eval`: questions, durable answers, scores).
"""
from agent.core import Agent
from agent.settings import FORMATS, AgentSettings
from agent.endpoint import ChatModel, OpenAIChat, SamplingSettings
from agent.errors import AgentError, QuestionFailed
from agent.serving import EndpointSpec
from agent.trajectory import AgentResult, AgentStep, Completion, ModelCall, Observation

__all__ = [
    "Agent", "AgentSettings", "AgentResult", "AgentStep", "ModelCall", "Observation", "FORMATS", "ChatModel",
    "Completion", "OpenAIChat", "SamplingSettings", "AgentError", "QuestionFailed", "EndpointSpec",
]
