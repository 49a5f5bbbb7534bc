"""Run inside LLaMA-Factory's venv: convert and encode exports the way `llamafactory-cli train` does.

    .venv-llamafactory/bin/python tests/trainer_tools/llamafactory_check.py MODEL_DIR OUT_DIR DATASET_DIR:NAME [...]

MODEL_DIR is built first when it holds no model (`tool_side.ensure_tiny_llava`). For each dataset NAME
registered in DATASET_DIR/dataset_info.json: LLaMA-Factory's own `_get_merged_dataset` (its
dataset_info parser, `datasets` json loader and `SharegptDatasetConverter`) gives the converted rows;
`get_dataset(..., stage="sft")` gives what its SFT trainer trains on (template `llava`, whose mm_plugin
expands each `<image>` and checks the images against the tags; relative paths resolve against
`media_dir`, by default DATASET_DIR). Reports per DATASET_DIR:NAME the counts, the system prompts seen and, per
encoded row, the labelled spans (decoded), the image tokens and the number of images; or
`{"dataset_dir", "name", "error"}` when LLaMA-Factory raised.
"""
from __future__ import annotations

import sys

from tool_side import IMAGE_TOKEN, ensure_tiny_llava, labelled_text, report


def check(model_dir: str, out_dir: str, dataset_dir: str, name: str) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args({
        "stage": "sft", "do_train": True, "model_name_or_path": model_dir, "template": "llava",
        "dataset_dir": dataset_dir, "dataset": name, "cutoff_len": 16384, "finetuning_type": "lora",
        "output_dir": out_dir, "overwrite_cache": True, "report_to": "none",
    })
    converted = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, "sft")
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    train = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)["train_dataset"]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    rows = [{
        "n_images": len(row.get("images") or []),
        "image_tokens": sum(1 for t in row["input_ids"] if t == image_id),
        "labelled": labelled_text(tokenizer, row["input_ids"], row["labels"]),
    } for row in train]
    return {
        "dataset_dir": dataset_dir,
        "name": name,
        "converted": len(converted),
        "converted_nonempty": sum(1 for r in converted if r["_prompt"] and r["_response"]),
        "systems": sorted({r["_system"] for r in converted}),
        "encoded": len(train),
        "rows": rows,
    }


def main(model_dir: str, out_dir: str, datasets: list[str]) -> None:
    ensure_tiny_llava(model_dir)
    for i, spec in enumerate(datasets):
        dataset_dir, name = spec.rsplit(":", 1)
        try:
            result = check(model_dir, f"{out_dir}/{i}", dataset_dir, name)
        except Exception as exc:  # reported as data: the caller asserts on it
            result = {"dataset_dir": dataset_dir, "name": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
        report(result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
