"""DESIGN §6 acceptance: `trl.SFTTrainer` + LoRA trains on `load_dataset(folder, "orr"|"rr")["train"]`
with no conversion, and with `assistant_only_loss=True` its labels cover exactly the assistant turns —
the same tokens our own collator trains on."""
from __future__ import annotations

import copy
import math

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

import torch

from tests.dataset_factory import make_dataset_folder
from trainer.tiny_vlm import assistant_runs, shared_tiny_vlm
from generation.dialogue_format import message_text
from trainer.data import MmatCollator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_dataset_folder(
        tmp_path_factory.mktemp("trl-data"), n_rows_per_source=2, sources=["tabmwp", "cauldron"], card=True
    )


@pytest.mark.parametrize("config", ["orr", "rr"])
def test_sft_trainer_trains_on_the_rows_with_assistant_only_loss(folder, tmp_path, config):
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    ds = load_dataset(str(folder), config)["train"]
    rows = [ds[i] for i in range(len(ds))]
    processor = AutoProcessor.from_pretrained(shared_tiny_vlm())
    ours = MmatCollator(processor)(copy.deepcopy(rows))

    trainer = SFTTrainer(
        model=AutoModelForImageTextToText.from_pretrained(shared_tiny_vlm()),
        args=SFTConfig(
            output_dir=str(tmp_path / "sft"),
            max_steps=3,
            per_device_train_batch_size=1,
            learning_rate=1e-2,
            assistant_only_loss=True,
            max_length=4096,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
        ),
        train_dataset=ds,  # content-block messages + images, exactly as loaded
        processing_class=processor,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

    trl_batch = trainer.data_collator(copy.deepcopy(rows))
    assert torch.equal(trl_batch["input_ids"], ours["input_ids"])
    assert torch.equal(trl_batch["labels"], ours["labels"])
    # and those labels are the assistant turns, every one of them
    for i, row in enumerate(rows):
        decoded = [processor.tokenizer.decode(r) for r in assistant_runs(trl_batch["input_ids"][i], trl_batch["labels"][i])]
        assert decoded == [message_text(m) + "<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant"]
