"""What both check scripts share; runs inside a trainer tool's venv, so it imports nothing of the project.

- `ensure_tiny_llava(path)`: a tiny LLaVA whose image token is `<image>`, built with the tool's own
  transformers (the tools pin older transformers than the project, and saved files of a newer one are not
  promised to load in an older one). It is `trainer/tiny_vlm.py`'s model (CLIP vision tower + Qwen2
  language model, random weights) with llava-1.5-hf's `<image>` token, the one ms-swift's `llava1_5_hf`
  and LLaMA-Factory's `llava` templates write. Both tools render prompts with their own templates, so
  the tokenizer's chat template is a placeholder.
- `labelled_text(tokenizer, input_ids, labels)`: the trained spans, decoded.
- `report(result)`: one `MMAT_RESULT {json}` line on stdout, where the tools log too.

    .venv-swift/bin/python tests/trainer_tools/tool_side.py /tmp/tiny-llava    # just build the model
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

# trainer/tiny_vlm.py by its file: importing the `trainer` package would pull in the project's own
# dependencies, which the tool's venv does not have (tiny_vlm.py imports only transformers and tokenizers).
_spec = importlib.util.spec_from_file_location(
    "tiny_vlm", Path(__file__).resolve().parents[2] / "trainer" / "tiny_vlm.py")
_tiny_vlm = importlib.util.module_from_spec(_spec)
sys.modules["tiny_vlm"] = _tiny_vlm
_spec.loader.exec_module(_tiny_vlm)
assistant_runs, build_tiny_vlm = _tiny_vlm.assistant_runs, _tiny_vlm.build_tiny_vlm

IMAGE_TOKEN = "<image>"
RESULT_PREFIX = "MMAT_RESULT "


def ensure_tiny_llava(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").exists():
        build_tiny_vlm(path, image_token=IMAGE_TOKEN, chat_template="{{ messages }}")
    return path


def labelled_text(tokenizer, input_ids: list[int], labels: list[int]) -> list[str]:
    """The maximal runs of labelled tokens (each label its own input token), each decoded."""
    return [tokenizer.decode(run) for run in assistant_runs(input_ids, labels)]


def report(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    print(ensure_tiny_llava(sys.argv[1]))
