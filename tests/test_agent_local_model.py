"""`--model-path`: the agent runs a local transformers model, here the shape of `mmat train`'s output (a
LoRA adapter folder with the processor beside it, over a tiny random LLaVA built offline). Its replies
are noise, so this checks the plumbing: the adapter is applied, the images go through the processor,
the loop ends and reports."""
from __future__ import annotations

import pytest

from agent import Agent, SamplingSettings
from tests.agent_support import light_operators_yaml
from tests.ocr_support import png, render
from trainer.tiny_vlm import build_tiny_vlm

pytestmark = pytest.mark.slow  # imports transformers and peft


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = tmp_path_factory.mktemp("tuned")
    base = build_tiny_vlm(root / "base")
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    out = root / "lora-out"
    model.save_pretrained(out)  # adapter_config.json names the base model's folder, as `mmat train` leaves it
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    return out


@pytest.mark.parametrize("fmt", ["rr", "plain"])
def test_a_lora_folder_runs_as_the_agent(lora_folder, tmp_path, fmt):
    from peft import PeftModel

    image = png(render([((40, 60), "STOP")]))
    with Agent.open(model_path=str(lora_folder), format=fmt, max_steps=2,
                    sampling=SamplingSettings(max_tokens=12),
                    operators_config=light_operators_yaml(tmp_path), cache_dir=tmp_path / "cache") as agent:
        assert isinstance(agent.chat.model, PeftModel) and agent.chat.vision
        result = agent.run_sync([image], "What does the sign say?")
    assert result.model == "lora-out" and result.images_sent
    assert result.status in ("answered", "unparsable", "max_steps"), result.error
    assert 1 <= result.turns <= 6
    first = result.calls[0]
    assert first.prompt_tokens > 4 and 0 < first.completion_tokens <= 12  # the prompt holds the image tokens
