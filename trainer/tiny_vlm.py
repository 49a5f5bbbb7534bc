"""A tiny, randomly initialised vision-language model of a real architecture, built offline.

    from trainer.tiny_vlm import build_tiny_vlm
    path = build_tiny_vlm(tmp_path / "tiny-vlm")        # model + processor, save_pretrained layout
    AutoProcessor.from_pretrained(path); AutoModelForImageTextToText.from_pretrained(path)

Architecture: `LlavaForConditionalGeneration` (CLIP vision tower → MLP projector → Qwen2 language
model), ~150k parameters, loaded through the same Auto classes as a Hub model. Why LLaVA and not the
default Qwen2.5-VL: in transformers 5.x every Qwen2/2.5/3-VL processor carries a video processor, and
video processors need torchvision, which does not import with the CPU torch here; LLaVA's processor is
image processor + tokenizer only and its CLIP image processor has a PIL backend.

To stay close to the default model, the tokenizer has Qwen's special tokens (`<|im_start|>`,
`<|im_end|>`, `<|vision_start|>`, `<|image_pad|>`, …; `<|image_pad|>` is the image token) and the chat
template is Qwen2.5-VL's own (the copy TRL ships and recognises, without `{% generation %}` markers),
so the trainer's prefix masking and TRL's template swap both run on the real template. The BPE
tokenizer (byte-level, so any text encodes) is trained locally with `tokenizers`.

It lives in the package (not only in tests/) so a user can try the trainer on a CPU with no download:

    python -m trainer.tiny_vlm tiny-vlm
    mmat train --data mmat-1m --config orr --model tiny-vlm --max-steps 20 --output runs/tiny

Random weights: the loss falls as it fits the rows, but the adapter is for trying the pipeline, not for use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
IMAGE_TOKEN = "<|image_pad|>"
IMAGE_SIZE = 28  # 2×2 patches of 14 px → 4 image tokens per image
PATCH_SIZE = 14

_CORPUS = [
    "You are a multimodal reasoning agent. Solve the question step by step.",
    "<THOUGHT>I should inspect the image with ocr.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
    "<THOUGHT>The ocr result shows the answer is answer1-0.</THOUGHT><SIGNAL>end</SIGNAL>",
    "<THOUGHT>The answer is probably answer2-0.</THOUGHT><SIGNAL>reflection</SIGNAL>",
    "Here are ocr results from the previous step:-ocr information: label 'sign' at [0.1, 0.2, 0.5, 0.6] "
    "Please continue your reasoning.",
    "No additional operator or rag results were selected in the previous step. Please continue your reasoning.",
    "The previous step contains an error. Please make a reflection.",
    "Based on the above information, please summarize and give the answer to the initial question:",
    "What is shown in region 1 of st_vqa image 3? Answer with a single word.",
    "Use the following API outputs to help answer the question:",
    "<|begin_api_invoke|>image_caption<|end_api_invoke|><|begin_result_of_api|>a red sign<|end_result_of_api|>",
    "<THOUGHT>I should look.</THOUGHT><ANSWER>The answer is: answer0-0</ANSWER>",
    "system user assistant image_caption label_bbox face_detection rag tabmwp infoseek cauldron visual_cot llava_cot",
    "0123456789 the of and a to in is that it for on with as was at by an be this are from or",
]


def qwen2_5_vl_chat_template() -> str:
    """Qwen2.5-VL's chat template (as shipped inside TRL, which matches it byte for byte)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


def qwen2_5_vl_training_chat_template() -> str:
    """TRL's training variant of the same template: identical text plus `{% generation %}` markers."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl_training.jinja").read_text(encoding="utf-8")


def build_tokenizer(vocab_size: int = 512, image_token: str = IMAGE_TOKEN):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + ([image_token] if image_token not in SPECIAL_TOKENS else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )


def build_tiny_vlm(
    path: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    chat_template: Optional[str] = None,
    image_token: str = IMAGE_TOKEN,
) -> Path:
    """Write a tiny LLaVA (CLIP + Qwen2) model and its processor to `path`; return `path`.

    `image_token="<image>"` gives llava-1.5-hf's image token, the one ms-swift's `llava1_5_hf` and
    LLaMA-Factory's `llava` templates write (tests/trainer_tools/tool_side.py builds it so in their venvs).
    """
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )

    path = Path(path)
    tokenizer = build_tokenizer(image_token=image_token)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",  # drop CLS: (28/14)² = 4 image tokens
        num_additional_image_tokens=1,
        image_token=image_token,
        chat_template=chat_template or qwen2_5_vl_chat_template(),
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


_CACHE: dict[str, Path] = {}


def shared_tiny_vlm() -> Path:
    """One tiny VLM per test process (built on first use into a temp folder, then reused)."""
    if "path" not in _CACHE:
        import tempfile

        _CACHE["path"] = build_tiny_vlm(Path(tempfile.mkdtemp(prefix="tiny-vlm-")) / "tiny-vlm")
    return _CACHE["path"]


def assistant_runs(input_ids, labels, ignore_index: int = -100) -> list[list[int]]:
    """The maximal runs of consecutive labelled tokens (the trained spans), as lists of token ids."""
    runs: list[list[int]] = []
    current: list[int] = []
    for token, label in zip(list(input_ids), list(labels)):
        token, label = int(token), int(label)
        if label != ignore_index:
            if label != token:
                raise AssertionError(f"label {label} differs from its input token {token}")
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m trainer.tiny_vlm OUT`: build the tiny model into OUT and print its path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainer.tiny_vlm", description=main.__doc__)
    parser.add_argument("out", type=Path, help="folder to write (save_pretrained layout)")
    args = parser.parse_args(argv)
    print(build_tiny_vlm(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
