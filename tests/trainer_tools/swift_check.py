"""Run inside ms-swift's venv: load exports with ms-swift's loader and encode them with its template.

    .venv-swift/bin/python tests/trainer_tools/swift_check.py MODEL_DIR EXPORT.jsonl [EXPORT2 ...]

Prints one JSON object per export: the rows in the file, the rows `swift.dataset.load_dataset`
kept, the rows `EncodePreprocessor` (what `swift sft` runs) kept, and per encoded row the labelled
token runs (decoded), the image-token runs and the pixel_values count, so the caller can check every
assistant turn is a target and every image reached the model input. Relative image paths resolve
against the export's folder (`ROOT_IMAGE_DIR`, ms-swift's own setting for that).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


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


def main(model_dir: str, exports: list[str]) -> None:
    from swift import get_processor, get_template
    from swift.dataset import EncodePreprocessor, load_dataset

    processor = get_processor(model_dir, model_type="llava1_5_hf", use_hf=True)
    template = get_template(processor, template_type="llava1_5_hf", max_length=8192)
    template.set_mode("train")
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    for path in exports:
        os.environ["ROOT_IMAGE_DIR"] = str(Path(path).resolve().parent)
        n_lines = None
        if path.endswith(".jsonl"):
            n_lines = sum(1 for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
        ds, _ = load_dataset([path], num_proc=1, load_from_cache_file=False)
        encoded_ds = EncodePreprocessor(template)(ds, num_proc=1, load_from_cache_file=False)
        rows = []
        for row in ds:
            try:
                enc = template.encode(row)
            except Exception as exc:  # reported per row: the caller counts them
                rows.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            ids, labels = enc["input_ids"], enc["labels"]
            label_runs = runs([t if lab != -100 else -1 for t, lab in zip(ids, labels)], lambda t: t != -1)
            rows.append({
                "n_images": len(row.get("images") or []),
                "pixel_values": int(enc["pixel_values"].shape[0]) if "pixel_values" in enc else 0,
                "image_token_runs": len(runs(ids, lambda t: t == image_id)),
                "labelled": [tokenizer.decode(r) for r in label_runs],
                "n_tokens": len(ids),
            })
        print(json.dumps({"path": path, "lines": n_lines, "loaded": len(ds), "encoded": len(encoded_ds),
                          "rows": rows}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
