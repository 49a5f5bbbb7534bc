"""Where the tuned model runs: one of three, chosen by which flag is given.

- `endpoint` (+ `model`): any OpenAI-compatible server already running (vLLM serving the merged LoRA,
  SGLang, a llama.cpp server, OpenAI); the key comes from the environment variable `api_key_env`;
- `gguf`: a GGUF file served for the run by the local teacher's launcher
  (`generation.teachers.llamacpp.LlamaCppServer`: a child process on 127.0.0.1 that never outlives us);
- `model_path`: a local transformers model or the trainer's LoRA output (`agent.local_model`).

`open_chat(spec, stack)` returns the `ChatModel`; whatever it started is stopped when `stack` closes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from agent.endpoint import ChatModel, OpenAIChat, SamplingSettings, api_key_from_env
from agent.errors import AgentError


@dataclass
class EndpointSpec:
    endpoint: Optional[str] = None
    model: Optional[str] = None
    gguf: Optional[str] = None
    model_path: Optional[str] = None
    base_model: Optional[str] = None  # the base of a LoRA folder whose adapter_config does not name it
    api_key_env: str = "OPENAI_API_KEY"
    vision: Optional[bool] = None  # None: ask the server (llama.cpp says), else send images
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    timeout_s: float = 300.0
    threads: Optional[int] = None  # gguf: CPU threads (default: half the cores, at most 8)
    n_ctx: int = 4096  # gguf: context per request
    parallel: int = 1  # gguf: requests decoded at once
    log_path: Optional[Path] = None  # gguf: the server's log file (default: a temp file)

    def describe(self) -> str:
        return self.endpoint or self.gguf or self.model_path or "?"


def open_chat(spec: EndpointSpec, stack: contextlib.ExitStack) -> ChatModel:
    given = [name for name, value in (("--endpoint", spec.endpoint), ("--gguf", spec.gguf),
                                      ("--model-path", spec.model_path)) if value]
    if len(given) != 1:
        raise AgentError("name the model's place with exactly one of --endpoint URL (a running OpenAI-compatible "
                         "server), --gguf FILE (served here by llama.cpp) or --model-path DIR (transformers)"
                         + (f"; got {', '.join(given)}" if given else ""))
    if spec.model_path:
        from agent.local_model import TransformersChat

        return TransformersChat(spec.model_path, base_model=spec.base_model, sampling=spec.sampling)
    if spec.gguf:
        return _served_gguf(spec, stack)
    return OpenAIChat(spec.endpoint, spec.model, api_key=api_key_from_env(spec.api_key_env),  # type: ignore[arg-type]
                      vision=spec.vision, sampling=spec.sampling, timeout_s=spec.timeout_s)


def _served_gguf(spec: EndpointSpec, stack: contextlib.ExitStack) -> ChatModel:
    from generation.config import ConfigError, TeacherConfig
    from generation.teachers.llamacpp import LlamaCppError, LlamaCppServer, model_alias, settings_for

    try:
        cfg = TeacherConfig(kind="llamacpp", model_path=str(spec.gguf), n_ctx=spec.n_ctx, threads=spec.threads,
                            parallel=spec.parallel)
        server = stack.enter_context(LlamaCppServer(settings_for(cfg), log_path=spec.log_path))
    except (ConfigError, LlamaCppError) as exc:
        raise AgentError(str(exc).replace("teacher.model_path", "--gguf").replace("teacher.kind llamacpp", "--gguf")
                         ) from None
    return OpenAIChat(server.base_url, spec.model or model_alias(str(spec.gguf)), vision=spec.vision,
                      sampling=spec.sampling, timeout_s=spec.timeout_s)
