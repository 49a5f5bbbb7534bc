"""`mmat export` output read by the real trainer tools, each in its own venv (`make trainer-venvs`).

ms-swift 4.6 and LLaMA-Factory 0.9.5 pin older datasets/transformers/trl/peft than the project, so they
run through subprocess from `.venv-swift` / `.venv-llamafactory` on exports of a dataset folder written
with the project's schema and card (tests/dataset_factory.py: RR and ORR, one- and two-image rows,
two-question dialogues, reflections):

- ms-swift: `swift.dataset.load_dataset` (its loader) and `EncodePreprocessor` / `template.encode`
  (what `swift sft` trains on), template `llava1_5_hf` (tests/trainer_tools/swift_check.py);
- LLaMA-Factory: its dataset_info parser, `SharegptDatasetConverter` and SFT encoding, template `llava`
  (tests/trainer_tools/llamafactory_check.py);
- the train commands of trainer/README.md, two LoRA steps on CPU with a tiny LLaVA built in each venv.

Both absolute-path exports and `relative_paths=True` exports moved to another folder (their image store
deleted) are read. Each row must arrive whole: every assistant turn a target, exactly; every image
loaded and expanded at its `<image>` tag.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import datasets
import pytest

from tests.dataset_factory import SYSTEM_PROMPT, make_dataset_folder
from trainer.exporting import export, flatten_content

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tests" / "trainer_tools"
CONFIGS = ("rr", "orr")
TOKENS_PER_IMAGE = 4  # tests/trainer_tools/tool_side.py: 28 px images, 14 px patches, CLS dropped
SWIFT_END = "</s>"  # llava1_5_hf's end of an assistant turn (plain text to this tokenizer)
LF_END = "<|im_end|>"  # LLaMA-Factory's `llava` template ends a turn with the tokenizer's eos
TIMEOUT = 1200


def _tool_python(venv_var: str, default: str) -> Path:
    python = REPO / os.environ.get(venv_var, default) / "bin" / "python"
    if not python.exists():
        message = f"{python.parent.parent.name} is missing: run `make trainer-venvs`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def _run(cmd: list, *, cwd: Path, home: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the project's path stays out of their venvs
    env.update({
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "USE_HF": "1",
        "HF_HOME": str(home / "hf"), "MODELSCOPE_CACHE": str(home / "modelscope"), "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "", "DISABLE_VERSION_CHECK": "1",
    })
    env.update(extra_env or {})
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{cmd[0]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _results(proc: subprocess.CompletedProcess) -> list[dict]:
    """The check scripts' `MMAT_RESULT {json}` lines (the tools log to stdout too)."""
    prefix = "MMAT_RESULT "
    return [json.loads(line[len(prefix):]) for line in proc.stdout.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """Exports of every (format, config): `abs` (absolute paths) and `moved` (relative, copied elsewhere)."""
    root = tmp_path_factory.mktemp("real-tools")
    folder = make_dataset_folder(root, n_rows_per_source=4, card=True)
    expected = {}
    for config in CONFIGS:
        ds = datasets.load_dataset(str(folder), config, split="train")
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
        expected[config] = [
            {"assistant": [flatten_content(m["content"]) for m in row["messages"] if m["role"] == "assistant"],
             "n_images": len(row["images"])}
            for row in ds
        ]
    for fmt in ("swift", "sharegpt"):
        for config in CONFIGS:
            export(folder, fmt, root / "abs" / fmt / f"mmat_{config}.jsonl", config=config)
            export(folder, fmt, root / "staging" / fmt / f"mmat_{config}.jsonl", config=config,
                   images_dir=root / "store", relative_paths=True)
    shutil.copytree(root / "staging", root / "moved")  # another machine: nothing of the old folders is left
    shutil.rmtree(root / "staging")
    shutil.rmtree(root / "store")
    assert any(r["n_images"] == 2 for r in expected["rr"]) and any(len(r["assistant"]) > 3 for r in expected["rr"])
    return {"root": root, "expected": expected}


def _assert_rows_whole(rows: list[dict], expected: list[dict], end: str) -> None:
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert "error" not in row, row
        assert row["labelled"] == [text + end for text in want["assistant"]]  # every assistant turn, nothing else
        assert row["n_images"] == want["n_images"]
        assert row["image_tokens"] == TOKENS_PER_IMAGE * want["n_images"]  # each image expanded at its tag


@pytest.fixture(scope="module")
def swift(exports) -> dict:
    python = _tool_python("MMAT_SWIFT_VENV", ".venv-swift")
    root = exports["root"]
    files = [root / where / "swift" / f"mmat_{config}.jsonl" for where in ("abs", "moved") for config in CONFIGS]
    proc = _run([python, TOOLS / "swift_check.py", root / "tiny-llava-swift", *files], cwd=root, home=root / "swift-home")
    results = {Path(r["path"]): r for r in _results(proc)}
    return {"python": python, "model": root / "tiny-llava-swift", "results": results}


@pytest.fixture(scope="module")
def llamafactory(exports) -> dict:
    python = _tool_python("MMAT_LLAMAFACTORY_VENV", ".venv-llamafactory")
    root = exports["root"]
    specs = [f"{root / where / 'sharegpt'}:mmat_{config}" for where in ("abs", "moved") for config in CONFIGS]
    proc = _run([python, TOOLS / "llamafactory_check.py", root / "tiny-llava-lf", root / "lf-check", *specs],
                cwd=root, home=root / "lf-home")
    results = {(Path(r["dataset_dir"]).parent.name, r["name"]): r for r in _results(proc)}
    return {"python": python, "model": root / "tiny-llava-lf", "results": results}


@pytest.mark.parametrize("where", ["abs", "moved"])
@pytest.mark.parametrize("config", CONFIGS)
def test_swift_loader_and_encoder_keep_every_row_turn_and_image(swift, exports, config, where):
    result = swift["results"][exports["root"] / where / "swift" / f"mmat_{config}.jsonl"]
    expected = exports["expected"][config]
    assert result["lines"] == result["loaded"] == result["encoded"] == len(expected)
    _assert_rows_whole(result["rows"], expected, SWIFT_END)
    assert all(row["pixel_values"] == row["n_images"] for row in result["rows"])


@pytest.mark.parametrize("where", ["abs", "moved"])
@pytest.mark.parametrize("config", CONFIGS)
def test_llamafactory_converter_and_encoder_keep_every_row_turn_and_image(llamafactory, exports, config, where):
    result = llamafactory["results"][(where, f"mmat_{config}")]
    assert "error" not in result, result["error"]  # ORR was `KeyError: 'system'` before dataset_info matched the rows
    expected = exports["expected"][config]
    assert result["converted"] == result["converted_nonempty"] == result["encoded"] == len(expected)
    assert result["systems"] == ([SYSTEM_PROMPT] if config == "rr" else [""])
    _assert_rows_whole(result["rows"], expected, LF_END)


def _swift_sft(swift: dict, dataset: str, output: Path) -> list:
    """trainer/README.md's ms-swift command, with the tiny model and 2 steps (the flags after `--max_steps`)."""
    return [swift["python"].parent / "swift", "sft", "--model", swift["model"], "--model_type", "llava1_5_hf",
            "--tuner_type", "lora", "--dataset", dataset, "--learning_rate", "4e-5", "--weight_decay", "0.1",
            "--num_train_epochs", "1", "--max_length", "16384", "--per_device_train_batch_size", "1",
            "--torch_dtype", "float32", "--output_dir", output,
            "--max_steps", "2", "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "false",
            "--save_steps", "2", "--logging_steps", "1", "--report_to", "none", "--dataloader_num_workers", "0"]


def test_swift_sft_trains_two_lora_steps_on_a_moved_relative_export(swift, exports):
    root = exports["root"]
    moved = root / "moved" / "swift"  # relative image paths resolve against the working folder
    _run(_swift_sft(swift, "mmat_rr.jsonl", root / "swift-run"), cwd=moved, home=root / "swift-home")
    states = sorted((root / "swift-run").glob("v*/checkpoint-2/trainer_state.json"))
    assert states, list((root / "swift-run").rglob("*"))
    state = json.loads(states[-1].read_text())
    assert state["global_step"] == 2 and all(log["loss"] > 0 for log in state["log_history"] if "loss" in log)
    assert (states[-1].parent / "adapter_model.safetensors").is_file()


def test_llamafactory_cli_trains_two_lora_steps_on_both_moved_relative_exports(llamafactory, exports):
    root = exports["root"]
    out = root / "lf-run"
    _run([llamafactory["python"].parent / "llamafactory-cli", "train", "--stage", "sft", "--do_train", "true",
          "--model_name_or_path", llamafactory["model"], "--template", "llava", "--finetuning_type", "lora",
          "--lora_target", "all", "--dataset_dir", root / "moved" / "sharegpt", "--dataset", "mmat_rr,mmat_orr",
          "--learning_rate", "4e-5", "--weight_decay", "0.1", "--num_train_epochs", "1", "--cutoff_len", "16384",
          "--per_device_train_batch_size", "1", "--output_dir", out,
          "--max_steps", "2", "--gradient_accumulation_steps", "1", "--save_steps", "2", "--logging_steps", "1",
          "--report_to", "none", "--overwrite_output_dir", "true"],
         cwd=root, home=root / "lf-home")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and all(log["loss"] > 0 for log in state["log_history"] if "loss" in log)
    assert (out / "adapter_model.safetensors").is_file()
