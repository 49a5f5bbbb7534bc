"""The regulariser equals Σ‖B·A·scaling‖²_F computed by hand, and the Trainer adds exactly λ times it."""
from __future__ import annotations

import pytest

peft = pytest.importorskip("peft")

import datasets
import torch

from mmat_1m import FEATURES
from tests.dataset_factory import make_dialogue
from trainer.tiny_vlm import shared_tiny_vlm
from trainer.config import DEFAULT_TARGET_MODULES
from trainer.frobenius import iter_lora_pairs, lora_frobenius_sq


def _lora_model(seed: int = 0, two_adapters: bool = True):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    base = AutoModelForImageTextToText.from_pretrained(shared_tiny_vlm())
    model = get_peft_model(
        base,
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=DEFAULT_TARGET_MODULES, task_type="CAUSAL_LM"),
    )
    if two_adapters:
        model.add_adapter(
            "second",
            LoraConfig(r=2, lora_alpha=3, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], use_rslora=True,
                       task_type="CAUSAL_LM"),
        )
    # peft starts B at zero (ΔW = 0); give every A and B random values so the norm is not trivially 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return model


def _hand(model, adapters) -> float:
    """Σ ‖B A s‖²_F with ΔW formed explicitly, from peft's own get_delta_weight."""
    from peft.tuners.lora import LoraLayer

    total = 0.0
    n = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for adapter in adapters:
                if adapter in module.lora_A:
                    delta = module.get_delta_weight(adapter).double()
                    A = module.lora_A[adapter].weight.double()
                    B = module.lora_B[adapter].weight.double()
                    assert torch.allclose(delta, B @ A * module.scaling[adapter])
                    total += float((delta.detach()**2).sum())
                    n += 1
    assert n > 0
    return total


def test_regulariser_equals_hand_computation_over_all_adapters():
    model = _lora_model()
    # the default adapter targets the language model only, never the vision tower
    names = {p.module_name for p in iter_lora_pairs(model, ["default"])}
    assert names and all("language_model" in n for n in names)
    assert not any("vision" in n for n in names)

    for adapters in (["default"], ["second"], ["default", "second"]):
        fast = lora_frobenius_sq(model, adapter_names=adapters)
        explicit = lora_frobenius_sq(model, adapter_names=adapters, explicit=True)
        hand = _hand(model, adapters)
        assert hand > 0
        assert float(fast) == pytest.approx(hand, rel=1e-5)
        assert float(explicit) == pytest.approx(hand, rel=1e-5)

    # default (None) means each layer's active adapters
    assert float(lora_frobenius_sq(model)) == pytest.approx(_hand(model, ["default"]), rel=1e-5)
    model.base_model.set_adapter(["default", "second"])
    assert float(lora_frobenius_sq(model)) == pytest.approx(_hand(model, ["default", "second"]), rel=1e-5)


def test_regulariser_gradient_matches_the_explicit_form():
    model = _lora_model(two_adapters=False)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    g_fast = torch.autograd.grad(lora_frobenius_sq(model), params)
    g_explicit = torch.autograd.grad(lora_frobenius_sq(model, explicit=True), params)
    for a, b in zip(g_fast, g_explicit):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # and it is zero with peft's own initialisation (B = 0)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    fresh = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(shared_tiny_vlm()),
        LoraConfig(r=4, lora_alpha=8, target_modules=DEFAULT_TARGET_MODULES, task_type="CAUSAL_LM"),
    )
    assert float(lora_frobenius_sq(fresh)) == 0.0


def test_dora_is_refused():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(shared_tiny_vlm()),
        LoraConfig(r=2, target_modules=["q_proj"], use_dora=True, task_type="CAUSAL_LM"),
    )
    with pytest.raises(NotImplementedError, match="DoRA|Dora"):
        lora_frobenius_sq(model)


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_trainer_loss_is_cross_entropy_plus_lambda_times_regulariser(tmp_path, lam):
    from transformers import AutoProcessor, TrainingArguments

    from trainer.data import MmatCollator
    from trainer.lora import FrobeniusLoraTrainer

    processor = AutoProcessor.from_pretrained(shared_tiny_vlm())
    model = _lora_model(two_adapters=False)
    rows = list(datasets.Dataset.from_list([make_dialogue("tabmwp", "train", 2)["rr"]], features=FEATURES))
    batch = MmatCollator(processor)(rows)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, remove_unused_columns=False)
    trainer = FrobeniusLoraTrainer(model=model, args=args, frobenius_lambda=lam, processing_class=processor)
    model.train()
    loss = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        ce = model(**batch).loss
    hand = _hand(model, ["default"])
    assert torch.isfinite(loss)
    assert float(loss) == pytest.approx(float(ce) + lam * hand, rel=1e-5)
    if lam:
        assert float(loss) - float(ce) > 1e-3  # the term is really there


def _qwen2_5_vl():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=64, num_heads=2, intermediate_size=64,
                           patch_size=14, spatial_merge_size=2, window_size=56, fullatt_block_indexes=[1]),
        text_config=dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        image_token_id=299, video_token_id=298, vision_start_token_id=297,
    ))


def _internvl():
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    return InternVLForConditionalGeneration(InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[28, 28], patch_size=[14, 14]),
        text_config=dict(model_type="qwen2", vocab_size=300, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        image_token_id=299, downsample_ratio=0.5,
    ))


def _qwen2_5_vl_inputs():  # one 28x28 image: 2x2 patches, merged 2x2 -> 1 image token
    ids = torch.tensor([[1, 2, 297, 299, 3, 4, 5]])
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids,
                pixel_values=torch.randn(4, 3 * 2 * 14 * 14), image_grid_thw=torch.tensor([[1, 2, 2]]))


def _internvl_inputs():  # one 28x28 image: 2x2 patches, pixel-shuffled by 0.5 -> 1 image token
    ids = torch.tensor([[1, 2, 299, 3, 4, 5]])
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids, pixel_values=torch.randn(1, 3, 28, 28))


@pytest.mark.parametrize("build,inputs", [(_qwen2_5_vl, _qwen2_5_vl_inputs), (_internvl, _internvl_inputs)],
                         ids=["qwen2_5_vl", "internvl_hf"])
def test_default_targets_are_the_language_model_projections_of_real_architectures(build, inputs):
    """The default model's architecture (and InternVL's), built from tiny configs: LoRA lands on the 7
    projections of every language-model layer and on no vision-tower module (both towers have q_proj or
    gate_proj), and a training forward pass with an image runs through it."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build(), LoraConfig(r=4, target_modules=DEFAULT_TARGET_MODULES, task_type="CAUSAL_LM"))
    names = sorted({p.module_name for p in iter_lora_pairs(model)})
    assert len(names) == 2 * 7
    assert all(".language_model.layers." in n for n in names)
    suffixes = {n.rsplit(".", 1)[1] for n in names}
    assert suffixes == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert float(lora_frobenius_sq(model)) == 0.0
    torch.manual_seed(0)
    loss = model(**inputs()).loss + 0.1 * lora_frobenius_sq(model)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)

