"""End-to-end LoRA training on streamed rows with the tiny VLM: loss falls, the adapter reloads,
training resumes from a checkpoint, epochs are counted over a stream, and a tagged Hub revision
streams from the test Hub server."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("peft")

import torch

from tests.dataset_factory import make_dataset_folder, make_dialogue
from trainer.tiny_vlm import shared_tiny_vlm
from trainer import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    # tabmwp and cauldron, 4 train rows each: row 3 has two images (what tripped accelerate's batch
    # dispatcher), cauldron rows 1 and 3 two QA pairs, row 2 a reflection
    return make_dataset_folder(
        tmp_path_factory.mktemp("train-data"), n_rows_per_source=4, sources=["tabmwp", "cauldron"], card=True
    )


def _cfg(folder: Path, output: Path, **overrides) -> TrainConfig:
    fields = dict(
        data=str(folder),
        dataset_config="orr-tabmwp",
        model=str(shared_tiny_vlm()),
        output=str(output),
        max_steps=6,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        lora_r=8,
        lora_alpha=16,
        frobenius_lambda=1e-3,
        shuffle_buffer=0,
        logging_steps=1,
        save_steps=1000,
        max_length=4096,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def _train_logs(result) -> list[dict]:
    return [h for h in result.log_history if "loss_ce" in h]


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_overfitting_a_few_rows_lowers_the_loss_and_logs_both_terms(folder, tmp_path):
    result = train(_cfg(folder, tmp_path / "run", max_steps=30, logging_steps=5))
    logs = _train_logs(result)
    assert result.global_step == 30
    assert len(logs) >= 5
    for h in logs:
        assert math.isfinite(h["loss"]) and math.isfinite(h["loss_ce"]) and math.isfinite(h["loss_frob"])
        # Trainer's loss is the sum of the two terms, reported separately
        assert h["loss"] == pytest.approx(h["loss_ce"] + h["loss_frob"], rel=1e-4, abs=1e-5)
        assert h["loss_frob"] == pytest.approx(1e-3 * h["frob_norm_sq"], rel=0.5)  # averaged vs last step
    assert logs[0]["loss_frob"] == 0.0  # B starts at zero: ΔW = 0 before the first update
    assert logs[-1]["loss_frob"] > 0.0
    first, last = logs[0]["loss_ce"], logs[-1]["loss_ce"]
    assert last < first - 1.0, f"loss did not fall enough: {first} -> {last}"
    # the run folder holds the adapter, the processor and a copy of the config
    out = Path(result.output_dir)
    for name in ("adapter_config.json", "adapter_model.safetensors", "processor_config.json", "mmat_train_config.yaml"):
        assert (out / name).is_file(), name
    assert result.tokens_seen > 0 and result.target_tokens > 0 and result.tokens_per_second > 0


def test_saved_adapter_reloads_and_reproduces_the_logits(folder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trainer.data import MmatCollator, load_rows

    cfg = _cfg(folder, tmp_path / "run", max_steps=8)
    result = train(cfg)
    trained = result.trainer.model.eval()

    processor = AutoProcessor.from_pretrained(result.output_dir)  # the processor is saved with the adapter
    rows = list(load_rows(cfg))[:1]
    batch = MmatCollator(processor)(rows)
    base = AutoModelForImageTextToText.from_pretrained(cfg.model).eval()
    with torch.no_grad():
        base_logits = base(**batch).logits
    reloaded = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(cfg.model), result.output_dir).eval()
    with torch.no_grad():
        want = trained(**batch).logits
        got = reloaded(**batch).logits
    assert not torch.allclose(base_logits, want, atol=1e-3), "training changed nothing"
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_resume_from_a_checkpoint_continues_the_same_run(folder, tmp_path):
    full = train(_cfg(folder, tmp_path / "full", max_steps=6, save_steps=3))
    ckpt = tmp_path / "full" / "checkpoint-3"
    assert ckpt.is_dir() and (ckpt / "optimizer.pt").is_file() and (ckpt / "adapter_model.safetensors").is_file()

    # a run interrupted after step 3: only checkpoint-3 exists in its folder
    part = tmp_path / "resumed"
    part.mkdir()
    shutil.copytree(ckpt, part / "checkpoint-3")
    resumed = train(_cfg(folder, part, max_steps=6, save_steps=3, resume_from_checkpoint=True))
    assert resumed.global_step == 6
    new_steps = [h["step"] for h in _train_logs(resumed)]
    assert new_steps == [1, 2, 3, 4, 5, 6]  # 1-3 come from the checkpoint's state, 4-6 were trained now
    want, got = _adapter(tmp_path / "full"), _adapter(part)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.allclose(want[k], got[k], atol=1e-6), k  # optimizer, scheduler, RNG and data position restored

    # the checkpoint's weights are really what training continues from
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copytree(ckpt, tampered / "checkpoint-3")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tampered / "checkpoint-3" / "adapter_model.safetensors"))
    save_file({k: v * 3 for k, v in weights.items()}, str(tampered / "checkpoint-3" / "adapter_model.safetensors"))
    other = train(_cfg(folder, tampered, max_steps=6, save_steps=3, resume_from_checkpoint=True))
    assert other.global_step == 6
    assert not all(torch.allclose(want[k], _adapter(tampered)[k], atol=1e-4) for k in want)


def test_one_epoch_over_a_stream_is_counted_from_the_shards_and_evaluated(folder, tmp_path):
    from trainer.data import count_rows

    cfg = _cfg(folder, tmp_path / "epoch", dataset_config="orr", max_steps=None, num_train_epochs=1,
               gradient_accumulation_steps=2, logging_steps=1, eval_split="validation", eval_steps=2)
    assert cfg.streaming
    assert count_rows(cfg) == 8
    result = train(cfg)
    assert result.global_step == 4  # 8 rows, batch 1, 2 accumulation steps
    for h in _train_logs(result):
        assert h["loss"] == pytest.approx(h["loss_ce"] + h["loss_frob"], rel=1e-4, abs=1e-5)
    evals = [h["eval_loss"] for h in result.log_history if "eval_loss" in h]
    assert len(evals) == 2 and all(math.isfinite(v) for v in evals)  # the validation split, every step


def test_train_streams_a_tagged_revision_from_the_hub(hub_server, hub_client, tmp_path):
    from publishing.push import push_dataset

    repo = "tester/mmat-1m"
    v1 = make_dataset_folder(tmp_path / "v1", n_rows_per_source=2, sources=["tabmwp", "cauldron"], card=True)
    push_dataset(v1, repo, "v1.0.0")
    v2 = make_dataset_folder(tmp_path / "v2", n_rows_per_source=3, sources=["tabmwp", "cauldron"], card=True)
    push_dataset(v2, repo, "v1.1.0")

    out = tmp_path / "hub-run"
    model = shared_tiny_vlm()
    got = hub_client(
        f"""
        import json, math
        from trainer import TrainConfig, train
        from trainer.data import count_rows, load_rows
        common = dict(repo={repo!r}, model={str(model)!r}, output={str(out)!r}, learning_rate=1e-2,
                      lr_scheduler_type="constant", warmup_ratio=0.0, shuffle_buffer=0, logging_steps=4,
                      frobenius_lambda=1e-3, max_length=4096, lora_r=8, lora_alpha=16)
        counts = {{rev: count_rows(TrainConfig(revision=rev, dataset_config="orr", **common)) for rev in ("v1.0.0", "v1.1.0")}}
        ids = [r["id"] for r in load_rows(TrainConfig(revision="v1.0.0", dataset_config="orr", **common))]
        r = train(TrainConfig(revision="v1.0.0", dataset_config="orr-tabmwp", max_steps=16, **common))
        logs = [h for h in r.log_history if "loss_ce" in h]
        print(json.dumps({{"counts": counts, "ids": ids, "steps": r.global_step,
                          "loss": [h["loss"] for h in logs], "ce": [h["loss_ce"] for h in logs],
                          "frob": [h["loss_frob"] for h in logs]}}))
        """,
        timeout=300,
    )
    assert got["counts"] == {"v1.0.0": 4, "v1.1.0": 6}
    want_ids = sorted(make_dialogue(src, "train", i)["orr"]["id"] for src in ("tabmwp", "cauldron") for i in range(2))
    assert sorted(got["ids"]) == want_ids  # the v1.0.0 rows, not main's (v1.1.0 has a third row per source)
    assert got["steps"] == 16
    assert all(math.isfinite(v) for v in got["loss"])
    assert got["ce"][-1] < got["ce"][0] - 0.5, got["ce"]
    assert got["frob"][-1] > 0
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
