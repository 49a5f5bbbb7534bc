"""Labels cover exactly the assistant turns (every one of an RR dialogue), with images expanded."""
from __future__ import annotations

import pytest

pytest.importorskip("peft")

import datasets
import torch

from mmat_1m import FEATURES
from tests.dataset_factory import make_dialogue
from trainer.tiny_vlm import (
    IMAGE_TOKEN,
    assistant_runs,
    qwen2_5_vl_chat_template,
    qwen2_5_vl_training_chat_template,
    shared_tiny_vlm,
)
from generation.dialogue_format import message_text
from trainer.data import IGNORE_INDEX, MmatCollator, spans_to_token_mask

END_OF_TURN = "<|im_end|>\n"
TOKENS_PER_IMAGE = 4


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(shared_tiny_vlm())


def _rows(*keys: tuple[str, int, str]) -> list[dict]:
    """Rows as `load_dataset` yields them (through FEATURES: PIL images, image blocks with text=None)."""
    raw = [make_dialogue(source, "train", index)[fmt] for source, index, fmt in keys]
    return list(datasets.Dataset.from_list(raw, features=FEATURES))


# tabmwp #2: RR with a math reflection; cauldron #3: two QA pairs and two images; cauldron #5: both
ROWS = [("tabmwp", 2, "rr"), ("cauldron", 3, "rr"), ("cauldron", 5, "rr"), ("cauldron", 3, "orr"), ("infoseek", 0, "orr")]


def _expected(row: dict) -> list[str]:
    return [message_text(m) + END_OF_TURN for m in row["messages"] if m["role"] == "assistant"]


@pytest.mark.parametrize("key", ROWS, ids=lambda k: f"{k[2]}-{k[0]}-{k[1]}")
@pytest.mark.parametrize("strategy", ["prefix", "generation"])
def test_labels_decode_to_exactly_the_assistant_turns(processor, key, strategy):
    template = qwen2_5_vl_training_chat_template() if strategy == "generation" else None
    (row,) = _rows(key)
    collator = MmatCollator(processor, chat_template=template, mask_strategy=strategy)
    batch = collator([row])
    runs = assistant_runs(batch["input_ids"][0], batch["labels"][0])
    decoded = [processor.tokenizer.decode(r) for r in runs]
    expected = _expected(row)
    assert len(expected) == sum(m["role"] == "assistant" for m in row["messages"])
    if key[2] == "rr":
        assert len(expected) >= 3  # a real multi-turn dialogue: every step is a target
    assert decoded == expected


def test_image_tokens_are_expanded_and_never_targets(processor):
    (row,) = _rows(("cauldron", 3, "rr"))
    assert len(row["images"]) == 2
    batch = MmatCollator(processor)([row])
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    is_image = batch["input_ids"][0] == image_id
    assert int(is_image.sum()) == 2 * TOKENS_PER_IMAGE
    assert (batch["labels"][0][is_image] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[0] == 2


def test_prefix_masks_equal_generation_marker_masks(processor):
    rows = _rows(*ROWS)
    by_prefix = MmatCollator(processor, mask_strategy="prefix")(rows)
    by_markers = MmatCollator(processor, chat_template=qwen2_5_vl_training_chat_template())(rows)
    assert torch.equal(by_prefix["input_ids"], by_markers["input_ids"])
    assert torch.equal(by_prefix["labels"], by_markers["labels"])


def test_batch_padding_is_masked_and_rows_keep_their_own_targets(processor):
    rows = _rows(("tabmwp", 2, "rr"), ("infoseek", 0, "orr"))
    batch = MmatCollator(processor)(rows)
    assert batch["input_ids"].shape[0] == 2
    pad = batch["attention_mask"] == 0
    assert pad.any(), "the shorter row should be padded"
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    for i, row in enumerate(rows):
        runs = assistant_runs(batch["input_ids"][i], batch["labels"][i])
        assert [processor.tokenizer.decode(r) for r in runs] == _expected(row)


def test_truncation_keeps_the_start_and_refuses_to_cut_images(processor):
    (row,) = _rows(("tabmwp", 2, "rr"))
    full = MmatCollator(processor)([row])
    n = full["input_ids"].shape[1]
    cut = MmatCollator(processor, max_length=n - 40)([row])
    assert cut["input_ids"].shape[1] == n - 40
    assert torch.equal(cut["input_ids"][0], full["input_ids"][0][: n - 40])
    assert torch.equal(cut["labels"][0], full["labels"][0][: n - 40])
    with pytest.raises(ValueError, match="image tokens"):
        MmatCollator(processor, max_length=20)([row])


def test_a_template_that_rewrites_earlier_turns_is_refused(processor):
    # Renders only the last message: prefixes of the dialogue are not prefixes of the full text.
    bad = "{{ messages[-1]['role'] }}: {% for b in messages[-1]['content'] %}{{ b['text'] }}{% endfor %}"
    (row,) = _rows(("infoseek", 0, "orr"))
    with pytest.raises(ValueError, match="prefix-preserving"):
        MmatCollator(processor, chat_template=bad, mask_strategy="prefix")([row])
    with pytest.raises(ValueError, match="generation"):
        MmatCollator(processor, mask_strategy="generation")([row])  # Qwen2.5-VL's template has no markers


def test_spans_map_through_image_expansion():
    # text "ab<I>cd" (placeholder "<I>" at 2..5) expanded to "ab" + "<I>"*3 + "cd" (placeholder 2..11)
    replacements = [{"span": (2, 5), "new_span": (2, 11)}]
    offsets = [(0, 1), (1, 2), (2, 5), (5, 8), (8, 11), (11, 12), (12, 13), (0, 0)]
    assert spans_to_token_mask(offsets, [(5, 7)], replacements) == [0, 0, 0, 0, 0, 1, 1, 0]
    assert spans_to_token_mask(offsets, [(0, 1)], replacements) == [1, 0, 0, 0, 0, 0, 0, 0]
    assert spans_to_token_mask(offsets, [(0, 1), (6, 7)], replacements) == [1, 0, 0, 0, 0, 0, 1, 0]
    assert spans_to_token_mask(offsets, [], replacements) == [0] * 8


def test_the_tiny_model_uses_qwen2_5_vl_chat_template(processor):
    assert processor.chat_template == qwen2_5_vl_chat_template()
