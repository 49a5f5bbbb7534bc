"""A local transformers model as the agent's `ChatModel` (`--model-path`): a saved model, or the
trainer's output (a LoRA adapter folder: `adapter_config.json` names the base model, the processor
is saved beside it), loaded with `AutoModelForImageTextToText` (a causal LM for a text-only folder)
and `peft.PeftModel`.

The messages go through the processor's own chat template in the row schema's content-block form,
which transformers templates read directly (DESIGN §6), so the model sees its turns exactly as the
trainer showed them. Decoding is greedy unless a temperature is set; one call at a time (generate
runs in a worker thread, so the event loop and the operators keep going).
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from agent.endpoint import SamplingSettings
from agent.errors import AgentError
from agent.trajectory import Completion
from operators.images import LoadedImage

log = logging.getLogger("mmat.agent")

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def _text_only(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain-string messages without image blocks (what text-only chat templates expect)."""
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
             "".join(b.get("text") or "" for b in m["content"] if b.get("type") == "text")} for m in messages]


class TransformersChat:
    def __init__(self, model_path: str | Path, base_model: Optional[str] = None,
                 sampling: Optional[SamplingSettings] = None, device: str = "cpu") -> None:
        self.path = Path(model_path).expanduser()
        if not self.path.is_dir():
            raise AgentError(f"--model-path {str(model_path)!r}: no such folder (a saved model or `mmat train` output)")
        self.sampling = sampling or SamplingSettings()
        self.device = device
        self._lock = threading.Lock()
        adapter = self.path / "adapter_config.json"
        self.base = base_model
        if adapter.is_file() and not self.base:
            self.base = json.loads(adapter.read_text()).get("base_model_name_or_path")
            if not self.base:
                raise AgentError(f"{adapter} names no base model: pass --base-model")
        self.name = self.path.name
        self._load(adapter.is_file())

    def _load(self, is_adapter: bool) -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise AgentError(f"--model-path needs transformers and torch ({exc}): "
                             f"pip install 'mmat-1m[train]'") from None
        weights = self.base if is_adapter else str(self.path)
        processor_from = str(self.path) if any((self.path / f).is_file() for f in _PROCESSOR_FILES) else weights
        try:
            self.processor = AutoProcessor.from_pretrained(processor_from)
            try:
                self.model = AutoModelForImageTextToText.from_pretrained(weights)
            except ValueError:  # not a vision-language architecture
                self.model = AutoModelForCausalLM.from_pretrained(weights)
            if is_adapter:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise AgentError("a LoRA adapter folder needs peft: pip install 'mmat-1m[train]'") from None
                self.model = PeftModel.from_pretrained(self.model, str(self.path))
        except OSError as exc:
            raise AgentError(f"cannot load the model from {weights}: {str(exc).splitlines()[0]}") from None
        self.model.to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.vision = hasattr(self.processor, "image_processor")
        log.info("local model %s%s (%s)", weights, f" + adapter {self.path}" if is_adapter else "",
                 "vision" if self.vision else "text-only")

    def _generate(self, messages: Sequence[dict[str, Any]], images: Sequence[LoadedImage]) -> Completion:
        import torch

        start = time.perf_counter()
        n_blocks = sum(1 for m in messages if not isinstance(m["content"], str)
                       for b in m["content"] if b.get("type") == "image")
        pictures = [im.rgb for im in images[:n_blocks]] if self.vision else []
        chat = list(messages) if pictures else _text_only(messages)
        text = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        if pictures:
            inputs = self.processor(text=[text], images=pictures, return_tensors="pt")
        else:
            inputs = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.device)
        sample = self.sampling.temperature > 0
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.sampling.max_tokens, do_sample=sample,
                                         **({"temperature": self.sampling.temperature} if sample else {}))
        prompt_len = inputs["input_ids"].shape[1]
        new = output[0, prompt_len:]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        cut = len(new) >= self.sampling.max_tokens and int(new[-1]) not in eos_ids
        return Completion(text=self.tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=int(prompt_len),
                          completion_tokens=int(len(new)), latency_s=time.perf_counter() - start,
                          finish_reason="length" if cut else "stop")

    async def complete(self, messages: Sequence[dict[str, Any]], images: Sequence[LoadedImage]) -> Completion:
        def run() -> Completion:
            with self._lock:
                return self._generate(messages, images)

        return await asyncio.to_thread(run)

    async def aclose(self) -> None:
        return None
