"""Run inside a trainer tool's venv: write a tiny LLaVA whose image token is `<image>` to argv[1].

    .venv-swift/bin/python tests/trainer_tools/build_tiny_llava.py /tmp/tiny-llava [chat_template.jinja]

Built with the tool's own transformers (the tools pin older transformers than the project), from
`tests/tiny_vlm.py`: CLIP vision tower + Qwen2 language model, random weights, `<image>` as in
llava-1.5-hf, which is what ms-swift's `llava1_5_hf` and LLaMA-Factory's `llava` templates write.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_vlm only

from tiny_vlm import build_tiny_vlm  # noqa: E402

if __name__ == "__main__":
    template = Path(sys.argv[2]).read_text(encoding="utf-8") if len(sys.argv) > 2 else None
    # any chat template: both tools render prompts with their own templates, not the tokenizer's
    build_tiny_vlm(sys.argv[1], image_token="<image>", chat_template=template or "{{ messages }}")
    print(sys.argv[1])
