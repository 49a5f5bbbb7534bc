"""mmat-1m: the dataset's features and config matrix, declared once (DESIGN §6-§7).

The shard writer, the dataset card's YAML and the loader all read `FEATURES` and `CONFIGS` from here,
so the three can never disagree. Loading needs no code (the card's YAML `configs:` points at the
parquet shards); `Mmat1m` is the same data as a `GeneratorBasedBuilder` for users who want one:

    Mmat1m(config_name="orr", data_dir="mmat-1m").download_and_prepare()
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import datasets
from datasets import Features, Image, List, Value

from generation.sources.base import SOURCE_IDS

SOURCES = SOURCE_IDS  # one config pair per source adapter, in the adapters' order
FORMATS = ("rr", "orr")
SPLITS = ("train", "validation")
CARD_FILENAME = "README.md"  # the dataset card: its YAML `configs:` is what load_dataset reads
DEFAULT_CONFIG = "orr"

_text_block = {"type": Value("string"), "text": Value("string")}

FEATURES = Features(
    {
        "id": Value("string"),
        "source": Value("string"),
        "subset": Value("string"),
        "format": Value("string"),
        "images": List(Image()),
        "messages": List({"role": Value("string"), "content": List(_text_block)}),
        "steps": List(
            {
                "thought": Value("string"),
                "operators": List(Value("string")),
                "rag_query": Value("string"),
                "signal": Value("string"),
                "observations": List({"operator": Value("string"), "text": Value("string"), "backend": Value("string")}),
            }
        ),
        "question": Value("string"),
        "answer": Value("string"),
        "reflection": {"kind": Value("string"), "reason": Value("string"), "origin": Value("string")},
        "teacher": {
            "model": Value("string"),
            "prompt_tokens": Value("int64"),
            "completion_tokens": Value("int64"),
            "latency_s": Value("float64"),
            "cost_usd": Value("float64"),
            "cached_tokens": Value("int64"),  # part of prompt_tokens served from the provider's prompt cache
        },
        "meta": {
            "operators_available": List(Value("string")),
            "verified": Value("bool"),
            "judge_score": Value("float64"),
            "dropped_qas": Value("int64"),  # QA pairs the foundation's drop_qas filters removed from the dialogue
            "teacher_mode": Value("string"),  # vision | text_only | null (offline teacher)
            "grounded": Value("bool"),  # every answer is supported by the evidence shown (generation.quality)
            "math_questions": Value("int64"),  # questions the source marks as math (they get the math check)
            # what the answers rest on (generation.quality.evidence_kinds): tool (results shown), source_rationale
            # (only the source's own rationale, quoted as such), none; a dialogue has its weakest question's kind
            "evidence": Value("string"),
        },
        "engine_version": Value("string"),
    }
)


@dataclass(frozen=True)
class ConfigSpec:
    """One loadable config: a format over all sources (`orr`) or over one source (`orr-tabmwp`)."""

    name: str
    format: str
    source: Optional[str]  # None: every source

    @property
    def description(self) -> str:
        what = "multi-turn RR dialogues" if self.format == "rr" else "one-turn ORR dialogues"
        return f"{what} from {self.source or 'all sources'}"

    def shard_glob(self, split: str) -> str:
        """Path pattern (relative to the dataset folder) of this config's shards for one split."""
        return f"data/{self.format}/{self.source or '*'}/{split}-*.parquet"


CONFIGS: tuple[ConfigSpec, ...] = tuple(
    [ConfigSpec(fmt, fmt, None) for fmt in FORMATS]
    + [ConfigSpec(f"{fmt}-{src}", fmt, src) for fmt in FORMATS for src in SOURCES]
)
CONFIGS_BY_NAME = {c.name: c for c in CONFIGS}


def shard_dir(format: str, source: str) -> str:
    return f"data/{format}/{source}"


def shard_name(split: str, index: int, count: int) -> str:
    """File `index` of `count` of one group (`generation.writer` names a single worker's files so)."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def card_configs(dataset_dir: str | Path) -> list[dict]:
    """The card's YAML `configs:` list, with only the splits whose shards exist in `dataset_dir`.

    A config whose glob matches nothing would make `load_dataset` fail, so empty splits (and configs
    with no shards at all) are left out.
    """
    root = Path(dataset_dir)
    out = []
    for spec in CONFIGS:
        data_files = [
            {"split": split, "path": spec.shard_glob(split)}
            for split in SPLITS
            if any(root.glob(spec.shard_glob(split)))
        ]
        if data_files:
            entry = {"config_name": spec.name, "data_files": data_files}
            if spec.name == DEFAULT_CONFIG:
                entry["default"] = True
            out.append(entry)
    return out


class Mmat1mConfig(datasets.BuilderConfig):
    def __init__(self, spec: ConfigSpec, **kwargs) -> None:
        super().__init__(name=spec.name, description=spec.description, **kwargs)
        self.spec = spec


class Mmat1m(datasets.GeneratorBasedBuilder):
    """The mmat-1m shards as a builder. `data_dir` is the dataset folder (default: ./mmat-1m)."""

    BUILDER_CONFIGS = [Mmat1mConfig(spec) for spec in CONFIGS]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="MMAT-1M-style multimodal agent-tuning dialogues (RR and ORR formats).",
            features=FEATURES,
            homepage="https://arxiv.org/abs/2507.21924",
        )

    def _split_generators(self, dl_manager):
        root = Path(self.config.data_dir or "mmat-1m").resolve()
        generators = []
        for split in SPLITS:
            files = sorted(root.glob(self.config.spec.shard_glob(split)))
            if files:
                generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"files": files}))
        if not generators:
            raise FileNotFoundError(f"no {self.config.name} shards under {root}; run `mmat generate` first")
        return generators

    def _generate_examples(self, files: list[Path]) -> Iterator[tuple[str, dict]]:
        import pyarrow.parquet as pq

        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield row["id"], row
