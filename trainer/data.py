"""Rows in, model inputs out: loading (Hub or local, streaming), images, and assistant-only labels.

The collator owns masking (as TRL's collators do). Labels keep exactly the tokens of assistant turns,
every assistant turn of a multi-turn RR dialogue included; everything else is -100. The assistant spans
are found in the rendered chat text, in characters, then mapped onto tokens through the tokenizer's
offsets, shifted where the processor expanded an image placeholder into many image tokens:

- `generation`: the chat template's `{% generation %}…{% endgeneration %}` markers give the spans
  (what `apply_chat_template(..., return_assistant_tokens_mask=True)` uses);
- `prefix`: for each assistant message i, the span runs from the end of the rendering of
  `messages[:i]` with the generation prompt to the end of the rendering of `messages[:i+1]` — it
  holds the assistant text and the template's end-of-turn token(s), so the model learns to stop.
  This works with any prefix-preserving template (Qwen2/2.5-VL, LLaVA, InternVL, ...) with no
  template changes, and is checked: a template that rewrites earlier turns is an error.
"""
from __future__ import annotations

import bisect
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from trainer.config import TrainConfig

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


# ---------------------------------------------------------------------------------------------------
# loading


def _local_data_files(folder: Path, dataset_config: str, split: str) -> Optional[list[str]]:
    """Shards of one config/split in a dataset folder without a card (mmat_1m's layout)."""
    from mmat_1m import CONFIGS_BY_NAME

    spec = CONFIGS_BY_NAME.get(dataset_config)
    if spec is None:
        return None
    files = sorted(str(p) for p in folder.glob(spec.shard_glob(split)))
    return files or None


def load_rows(cfg: TrainConfig, split: Optional[str] = None):
    """The rows of `cfg`'s config/split/revision: an IterableDataset when streaming, else a Dataset.

    A Hub repo or a folder with a dataset card loads by config name; a local folder without a card
    falls back to its parquet shards (`data/{format}/{source}/{split}-*.parquet`).
    """
    import datasets

    split = split or cfg.split
    source = cfg.dataset_source
    kwargs: dict[str, Any] = {"split": split, "streaming": cfg.streaming}
    if cfg.revision and not cfg.is_local:
        kwargs["revision"] = cfg.revision
    folder = Path(source)
    if cfg.is_local and folder.is_dir() and not (folder / "README.md").exists():
        files = _local_data_files(folder, cfg.dataset_config, split)
        if files is None:
            raise FileNotFoundError(f"no {cfg.dataset_config}/{split} shards (and no README.md card) in {folder}")
        ds = datasets.load_dataset("parquet", data_files={split: files}, **kwargs)
    else:
        ds = datasets.load_dataset(source, cfg.dataset_config, **kwargs)
    if cfg.max_samples is not None:
        ds = ds.take(cfg.max_samples) if cfg.streaming else ds.select(range(min(cfg.max_samples, len(ds))))
    if cfg.streaming and cfg.shuffle_buffer > 0:
        ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
    return ds


def count_rows(cfg: TrainConfig, split: Optional[str] = None) -> Optional[int]:
    """Rows in the config's split without reading them: split info, else the parquet footers.

    Used to turn `num_train_epochs` into `max_steps` for a streamed dataset. None when unknown.
    """
    import datasets
    import fsspec
    import pyarrow.parquet as pq

    split = split or cfg.split
    folder = Path(cfg.dataset_source)
    try:
        if cfg.is_local and folder.is_dir() and not (folder / "README.md").exists():
            files: Sequence[str] = _local_data_files(folder, cfg.dataset_config, split) or []
        else:
            kwargs = {"revision": cfg.revision} if (cfg.revision and not cfg.is_local) else {}
            builder = datasets.load_dataset_builder(cfg.dataset_source, cfg.dataset_config, **kwargs)
            splits = builder.info.splits or {}
            if split in splits and splits[split].num_examples:
                n = int(splits[split].num_examples)
                return min(n, cfg.max_samples) if cfg.max_samples else n
            files = list((builder.config.data_files or {}).get(split, []))
        if not files:
            return None
        n = 0
        for f in files:
            with fsspec.open(str(f), "rb") as fh:
                n += pq.ParquetFile(fh).metadata.num_rows
    except Exception as e:  # counting is an optimisation: fall back to asking for max_steps
        log.warning("could not count the rows of %s/%s: %s", cfg.dataset_config, split, e)
        return None
    return min(n, cfg.max_samples) if cfg.max_samples else n


def steps_for_epochs(n_rows: int, cfg: TrainConfig, world_size: int = 1) -> int:
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * max(1, world_size)
    return max(1, math.ceil(n_rows * cfg.num_train_epochs / per_step))


# ---------------------------------------------------------------------------------------------------
# rows → messages and images


def to_pil(image: Any):
    """A decoded RGB PIL image from what `datasets` yields: PIL, {"bytes", "path"}, bytes or a path."""
    from PIL import Image

    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, dict):
        if image.get("bytes") is not None:
            img = Image.open(io.BytesIO(image["bytes"]))
        elif image.get("path"):
            img = Image.open(image["path"])
        else:
            raise ValueError("image dict with neither bytes nor path")
    elif isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        img = Image.open(image)
    else:
        raise TypeError(f"unsupported image value: {type(image).__name__}")
    return img.convert("RGB") if img.mode != "RGB" else img


def clean_messages(messages: Iterable[dict]) -> list[dict]:
    """Content-block messages with None-valued keys dropped (`{"type": "image", "text": None}` →
    `{"type": "image"}`), which is what chat templates and TRL expect; string contents are kept."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in block.items() if v is not None} for block in content]
        out.append({"role": m["role"], "content": content})
    return out


# ---------------------------------------------------------------------------------------------------
# assistant spans


def has_generation_markers(template: Optional[str]) -> bool:
    return bool(template) and _GENERATION_RE.search(template) is not None


def resolve_chat_template(processor, chat_template: Optional[str] = None) -> str:
    """The template text: an explicit one (a file path or the text itself), else the processor's."""
    if chat_template:
        p = Path(chat_template)
        if len(chat_template) < 4096 and "{" not in chat_template and p.is_file():
            return p.read_text(encoding="utf-8")
        return chat_template
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", processor), "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()))
    if not template:
        raise ValueError("the processor has no chat template; pass chat_template= (a .jinja file)")
    return template


def _render(processor, messages: list[dict], template: str, add_generation_prompt: bool = False) -> str:
    return processor.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans_prefix(processor, messages: list[dict], template: str) -> tuple[str, list[tuple[int, int]]]:
    """(full text, character spans of the assistant turns) by rendering message prefixes."""
    full = _render(processor, messages, template)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(processor, messages[:i], template, add_generation_prompt=True) if i else ""
        upto = _render(processor, messages[: i + 1], template)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ValueError(
                "the chat template is not prefix-preserving (rendering a prefix of the dialogue changes earlier "
                "text), so assistant turns cannot be located by prefixes; use a template with {% generation %} "
                "markers (chat_template=..., mask_strategy='generation')"
            )
        if len(upto) > len(before):
            spans.append((len(before), len(upto)))
    return full, spans


def assistant_spans_generation(processor, messages: list[dict], template: str) -> tuple[str, list[tuple[int, int]]]:
    """(full text, character spans) from the template's `{% generation %}` markers."""
    from transformers.utils.chat_template_utils import render_jinja_template

    tokenizer = getattr(processor, "tokenizer", processor)
    prompts, indices = render_jinja_template(
        conversations=[messages],
        chat_template=template,
        return_assistant_tokens_mask=True,
        **tokenizer.special_tokens_map,
    )
    return prompts[0], [tuple(s) for s in indices[0]]


def assistant_spans(processor, messages: list[dict], template: str, strategy: str = "auto"):
    if strategy == "auto":
        strategy = "generation" if has_generation_markers(template) else "prefix"
    if strategy == "generation":
        if not has_generation_markers(template):
            raise ValueError("mask_strategy='generation' needs a chat template with {% generation %} markers")
        return assistant_spans_generation(processor, messages, template)
    if strategy == "prefix":
        return assistant_spans_prefix(processor, messages, template)
    raise ValueError(f"unknown mask strategy {strategy!r}")


def spans_to_token_mask(
    offsets: Sequence[Sequence[int]],
    spans: Sequence[tuple[int, int]],
    replacements: Sequence[dict] = (),
) -> list[int]:
    """1 for every token overlapping a character span of the *unexpanded* text, 0 elsewhere.

    `offsets` are the tokenizer's (start, end) offsets in the expanded text (image placeholders
    replaced by many image tokens); `replacements` are the processor's `text_replacement_offsets`
    (each with the placeholder's `span` in the original text and `new_span` in the expanded one).
    Zero-width tokens (padding) never match.
    """
    ends = [r["span"][1] for r in replacements]
    gained = [0] + [r["new_span"][1] - r["span"][1] for r in replacements]

    def shift(c: int) -> int:
        return c + gained[bisect.bisect_right(ends, c)]

    shifted = sorted((shift(a), shift(b)) for a, b in spans)
    mask = [0] * len(offsets)
    j = 0
    for pos, (ts, te) in enumerate(offsets):
        if te <= ts:
            continue
        while j < len(shifted) and shifted[j][1] <= ts:
            j += 1
        if j < len(shifted) and shifted[j][0] < te:
            mask[pos] = 1
    return mask


# ---------------------------------------------------------------------------------------------------
# collator


@dataclass
class MmatCollator:
    """Rows (`messages` + `images`) → `input_ids`, `attention_mask`, `labels`, pixel inputs.

    Sequences longer than `max_length` keep their first `max_length` tokens; cutting into image
    tokens is an error (the image would be forwarded without its tokens).
    """

    processor: Any
    max_length: Optional[int] = None
    chat_template: Optional[str] = None
    mask_strategy: str = "auto"
    stats: dict = field(default_factory=lambda: {"rows": 0, "truncated": 0, "tokens": 0, "target_tokens": 0})

    def __post_init__(self) -> None:
        self.template = resolve_chat_template(self.processor, self.chat_template)
        tok = self.processor.tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.image_token_id = getattr(self.processor, "image_token_id", None)

    def encode_text(self, row: dict) -> tuple[list[dict], str, list[tuple[int, int]]]:
        messages = clean_messages(row["messages"])
        text, spans = assistant_spans(self.processor, messages, self.template, self.mask_strategy)
        return messages, text, spans

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        texts, spans, images = [], [], []
        for row in rows:
            _, text, sp = self.encode_text(row)
            texts.append(text)
            spans.append(sp)
            images.append([to_pil(im) for im in (row.get("images") or [])])
        kwargs: dict[str, Any] = dict(
            text=texts,
            return_tensors="pt",
            padding=True,
            padding_side="right",
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
        )
        if any(images):
            kwargs["images"] = images
        out = self.processor(**kwargs)
        if "offset_mapping" not in out:
            raise ValueError(
                f"{type(self.processor).__name__} returned no offset_mapping (a fast tokenizer is needed to align "
                "assistant spans with tokens)"
            )
        offsets = out.pop("offset_mapping").tolist()
        replacements = out.pop("text_replacement_offsets", None) or [[] for _ in rows]
        input_ids = out["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for i in range(len(rows)):
            mask = torch.tensor(spans_to_token_mask(offsets[i], spans[i], replacements[i]), dtype=torch.bool)
            mask &= out["attention_mask"][i].bool()
            labels[i][mask] = input_ids[i][mask]
        out["labels"] = labels

        seq_len = input_ids.shape[1]
        if self.max_length is not None and seq_len > self.max_length:
            self.stats["truncated"] += int((out["attention_mask"].sum(1) > self.max_length).sum().item())
            n_img_before = (input_ids == self.image_token_id).sum().item() if self.image_token_id is not None else 0
            for key in list(out.keys()):
                v = out[key]
                if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[:2] == input_ids.shape:
                    out[key] = v[:, : self.max_length]
            if self.image_token_id is not None:
                n_img_after = (out["input_ids"] == self.image_token_id).sum().item()
                if n_img_after != n_img_before:
                    raise ValueError(
                        f"max_length={self.max_length} cuts into image tokens ({n_img_before - n_img_after} lost); "
                        "raise max_length or lower the image resolution (processor_kwargs)"
                    )
        self.stats["rows"] += len(rows)
        self.stats["tokens"] += int(out["attention_mask"].sum().item())
        self.stats["target_tokens"] += int((out["labels"] != IGNORE_INDEX).sum().item())
        return dict(out)
