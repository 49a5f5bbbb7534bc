"""Run inside ms-swift's venv: load exports with ms-swift's loader and encode them with its template.

    .venv-swift/bin/python tests/trainer_tools/swift_check.py MODEL_DIR EXPORT.jsonl [EXPORT2 ...]

MODEL_DIR is built first when it holds no model (`tool_side.ensure_tiny_llava`). Reports, per export:
the rows in the file, the rows `swift.dataset.load_dataset` kept, the rows `EncodePreprocessor` (what
`swift sft` runs) kept, and per row the labelled spans (decoded), the image tokens and the
pixel_values count, or the error `template.encode` raised, so the caller can check every assistant
turn is a target and every image reached the model input. Relative image paths resolve against the
export's folder through `ROOT_IMAGE_DIR`, ms-swift's own setting for that.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tool_side import IMAGE_TOKEN, ensure_tiny_llava, labelled_text, report


def main(model_dir: str, exports: list[str]) -> None:
    from swift import get_processor, get_template
    from swift.dataset import EncodePreprocessor, load_dataset

    ensure_tiny_llava(model_dir)
    processor = get_processor(model_dir, model_type="llava1_5_hf", use_hf=True)
    template = get_template(processor, template_type="llava1_5_hf", max_length=16384)
    template.set_mode("train")
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for path in exports:
        os.environ["ROOT_IMAGE_DIR"] = str(Path(path).resolve().parent)
        lines = None
        if path.endswith(".jsonl"):
            lines = sum(1 for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
        ds, _ = load_dataset([path], num_proc=1, load_from_cache_file=False)
        encoded = EncodePreprocessor(template)(ds, num_proc=1, load_from_cache_file=False)
        rows = []
        for row in ds:
            try:
                enc = template.encode(row)
            except Exception as exc:  # reported per row: the caller counts them
                rows.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            rows.append({
                "n_images": len(row.get("images") or []),
                "pixel_values": int(enc["pixel_values"].shape[0]) if "pixel_values" in enc else 0,
                "image_tokens": sum(1 for t in enc["input_ids"] if t == image_id),
                "labelled": labelled_text(tokenizer, enc["input_ids"], enc["labels"]),
            })
        report({"path": path, "lines": lines, "loaded": len(ds), "encoded": len(encoded), "rows": rows})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
