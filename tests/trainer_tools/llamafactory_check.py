"""Run inside LLaMA-Factory's venv: convert and encode exports the way `llamafactory-cli train` does.

    .venv-llamafactory/bin/python tests/trainer_tools/llamafactory_check.py MODEL_DIR OUT_DIR DATASET_DIR NAME [NAME ...]

For each dataset NAME registered in DATASET_DIR/dataset_info.json: LLaMA-Factory's own
`_get_merged_dataset` (its dataset_info parser, `datasets` json loader and `SharegptDatasetConverter`)
gives the converted rows; `get_dataset(..., stage="sft")` gives what its SFT trainer trains on
(template `llava`, its mm_plugin expanding each `<image>` and checking images against tags). Prints
one `MMAT_RESULT {json}` line per NAME with the counts and, per encoded row, the labelled token runs (decoded), the
image-token runs and the number of images, or `{"name", "error"}` when LLaMA-Factory raised.
"""
from __future__ import annotations

import json
import sys


RESULT_PREFIX = "MMAT_RESULT "  # LLaMA-Factory logs to stdout too


def runs(ids: list[int], keep) -> list[list[int]]:
    out, cur = [], []
    for i in ids:
        if keep(i):
            cur.append(i)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def check(model_dir: str, out_dir: str, dataset_dir: str, name: str) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args({
        "stage": "sft", "do_train": True, "model_name_or_path": model_dir, "template": "llava",
        "dataset_dir": dataset_dir, "dataset": name, "cutoff_len": 8192, "finetuning_type": "lora",
        "output_dir": f"{out_dir}/{name}", "overwrite_cache": True, "report_to": "none",
    })
    converted = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, "sft")
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    train = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)["train_dataset"]
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    rows = []
    for row in train:
        ids, labels = row["input_ids"], row["labels"]
        label_runs = runs([t if lab != -100 else -1 for t, lab in zip(ids, labels)], lambda t: t != -1)
        rows.append({
            "n_images": len(row.get("images") or []),
            "image_token_runs": len(runs(ids, lambda t: t == image_id)),
            "labelled": [tokenizer.decode(r) for r in label_runs],
            "system": None,
        })
    return {
        "name": name,
        "converted": len(converted),
        "converted_nonempty": sum(1 for r in converted if r["_prompt"] and r["_response"]),
        "systems": sorted({r["_system"] for r in converted}),
        "encoded": len(train),
        "rows": rows,
    }


def main(model_dir: str, out_dir: str, dataset_dir: str, names: list[str]) -> None:
    for name in names:
        try:
            result = check(model_dir, out_dir, dataset_dir, name)
        except Exception as exc:  # reported as data: the caller asserts on it
            result = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
