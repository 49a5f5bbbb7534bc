"""Rows render through a real `transformers` chat template with every image block in place.

The content-block form is the contract with TRL and chat templates (DESIGN §6): no conversion step,
each `{"type": "image"}` block becomes the model's image placeholder exactly where it stands.
"""
from __future__ import annotations

import io

from PIL import Image

from generation.integration import build_rows
from generation.schema import QA, Observation, QATrajectory, Sample, Step, Trajectory
from trainer.tiny_vlm import shared_tiny_vlm

VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), colour).save(buf, format="PNG")
    return buf.getvalue()


def _rows():
    sample = Sample(id="cauldron/iconqa/7", source="cauldron", subset="iconqa",
                    qas=[QA(question="How many shapes?", answer="3"), QA(question="Which is bigger?", answer="left")])
    steps = [Step(thought="Count them.", operators=["image_caption"], signal="continue",
                  observations=[Observation(operator="image_caption", text="three shapes")]),
             Step(thought="There are 3.", signal="end")]
    traj = Trajectory(sample_id=sample.id, qas=[
        QATrajectory(question="How many shapes?", reference_answer="3", final_answer="3", steps=steps),
        QATrajectory(question="Which is bigger?", reference_answer="left", final_answer="left",
                     steps=[Step(thought="The left one.", signal="end")])])
    return build_rows(sample, traj, [_png((255, 0, 0)), _png((0, 0, 255))])


def test_rows_render_with_images_in_the_first_user_turn():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(shared_tiny_vlm())
    for fmt, row in _rows().items():
        text = processor.apply_chat_template(row["messages"], tokenize=False)
        assert text.count(VISION) == 2, fmt
        # both placeholders sit in the first user turn, before its question text
        first_user = text.index("<|im_start|>user")
        assert first_user < text.index(VISION) < text.rindex(VISION) < text.index("How many shapes?")
        assert text.index("How many shapes?") < text.index("Which is bigger?")
        assert text.count("<|im_start|>assistant") == sum(m["role"] == "assistant" for m in row["messages"])
        # and the processor pairs each placeholder with one image
        images = [Image.open(io.BytesIO(im["bytes"])) for im in row["images"]]
        batch = processor(text=[text], images=[images], return_tensors="pt")
        image_token_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert int((batch["input_ids"] == image_token_id).sum()) > 0
        assert batch["pixel_values"].shape[0] == 2
