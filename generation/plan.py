"""Planning a run: which samples this worker runs now, where its files go, and the dry run.

- The slice: worker i of N (`--num-shards N --shard-index i`, e.g. a Slurm array) owns the ids whose
  stable hash falls to it (`in_worker_slice`), so N independent workers split the sources without
  talking to each other, and every rerun, engine and worker agrees on who owns what.
- The plan (`make_plan`): this worker's samples that are neither finished nor quarantined (with
  `retry`: its quarantined ones), read through the source adapters in native order, plus the
  records the sources could not turn into samples. An id that two `sources:` entries both yield is
  planned once, from the first entry.
- The files: the work folder (checkpoints, quarantine, operator cache, run log) sits beside the
  dataset folder, never in it, so `mmat push` never uploads it (`default_work_dir`); each worker has
  its own checkpoint and log files (`worker_name`).
- `mmat generate --dry-run` (`describe_plan`) reads the sources and the checkpoint and probes the
  operator backends, and writes nothing: no dataset folder, no work folder, no operator cache.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.schema import Quarantined, Sample
from generation.sources import RecordIndex, Skipped, item_id, read_source
from generation.sources.record_index import FOLDER as RECORD_INDEX_FOLDER
from generation.splits import hash_fraction
from generation.teachers.offline import MODEL_NAME as OFFLINE_MODEL

log = logging.getLogger("mmat.runner")

# Rough size of one teacher call, for the dry run's cost estimate only (prompt with one image + history):
# benchmarks/teacher_cost.py measures 1,597 prompt tokens per call on the demo (9,884 per sample, 6.19 calls).
EST_PROMPT_TOKENS = 1600
EST_COMPLETION_TOKENS = 250


@dataclass
class RunOptions:
    out_dir: Path
    num_shards: int = 1
    shard_index: int = 0
    quiet: bool = False
    only_ids: Optional[set[str]] = None  # just these ids
    retry: bool = False  # `mmat retry`: run the quarantined ids again (and only those)
    max_quarantine_rate: Optional[float] = None  # overrides runner.max_quarantine_rate
    limit: Optional[int] = None  # at most this many new samples (smoke runs)


def default_work_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / ".mmat-work" / out_dir.name


def resolve_work_dir(config: PipelineConfig, out_dir: Path) -> Path:
    return Path(config.runner.work_dir) if config.runner.work_dir else default_work_dir(Path(out_dir))


def operator_cache_dir(config: PipelineConfig, work_dir: Path) -> Path:
    """Where operator results are cached (both engines): `operators.cache_dir`, else in the work folder."""
    return Path(config.operators.cache_dir) if config.operators.cache_dir else Path(work_dir) / "operator-cache"


def worker_name(options: RunOptions) -> str:
    """This worker's name in its checkpoint and log files: `0`, or `{i:05d}-of-{N:05d}`."""
    return "0" if options.num_shards == 1 else f"{options.shard_index:05d}-of-{options.num_shards:05d}"


def in_worker_slice(sample_id: str, options: RunOptions) -> bool:
    """Deterministic split of the ids over N workers (e.g. a Slurm array)."""
    return options.num_shards == 1 or int(hash_fraction(sample_id) * 2**32) % options.num_shards == options.shard_index


def record_index(checkpoint: Checkpoint) -> RecordIndex:
    """The work folder's record indexes (`generation.sources.record_index`); a read-only checkpoint
    (the dry run) reads them and writes none."""
    return RecordIndex(checkpoint.dir / RECORD_INDEX_FOLDER, writable=not checkpoint.readonly,
                       tmp_prefix=checkpoint.tmp_prefix)


def iter_samples(config: PipelineConfig, validate_images: bool = True,
                 skip: Optional[Callable[[str], bool]] = None,
                 index: Optional[RecordIndex] = None) -> Iterator[Sample | Quarantined | Skipped]:
    """Every record of every `sources:` entry. `validate_images=False` skips the sources' image decode
    (the run's planning: `SampleProcessor` decodes each image before the sample's first teacher call
    and quarantines a broken one at the foundation stage, so a finished sample is never decoded again
    and a planned one is decoded once). An id for which `skip(id)` is true comes as `Skipped(id)`,
    without building its Sample (see `read_source`): a rerun reads ids, not samples, and with the work
    folder's `index` reads them from the record indexes instead of decoding the records."""
    for source_cfg in config.sources:
        if not validate_images and source_cfg.validate_images:
            source_cfg = source_cfg.model_copy(update={"validate_images": False})
        yield from read_source(source_cfg, skip, index)


class PlannedSamples:
    """The samples a run processes, streamed from the sources in native order (a second pass over
    them), so a million-sample plan holds ids, never `Sample`s or image bytes. Iterable more than
    once; `len` is known from the planning pass."""

    def __init__(self, config: PipelineConfig, options: RunOptions, ids: set[str], validate_images: bool,
                 index: Optional[RecordIndex] = None) -> None:
        self._config = config
        self._index = index
        self._options = options
        self._ids = ids
        self._validate = validate_images

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __iter__(self) -> Iterator[Sample]:
        if not self._ids:
            return
        left = set(self._ids)
        for item in iter_samples(self._config, self._validate, skip=lambda sid: sid not in left,
                                 index=self._index):
            if isinstance(item, Sample) and item.id in left:
                left.discard(item.id)  # an id two entries yield: the first entry's, as planned
                yield item
                if not left:
                    return


@dataclass
class Plan:
    """What a run will do: the samples to process now and the foundation-stage quarantines."""

    todo: PlannedSamples
    foundation_failures: list[Quarantined]
    total: int  # samples of this worker's slice
    skipped: int  # finished or quarantined by an earlier run

    @property
    def size(self) -> int:
        """Outcomes the run will record: samples to process and foundation failures."""
        return len(self.todo) + len(self.foundation_failures)


def make_plan(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint,
              validate_images: bool = False) -> Plan:
    """This worker's samples that are neither finished nor quarantined (with `retry`: its quarantined
    ones). A source quarantines its own repeated ids (`{id}#repeat-n`, see `generation.sources`); an id
    that two `sources:` entries both yield (the same folder listed twice) is planned once.

    Memory stays flat in the size of the sources: this pass keeps ids only (the samples stream from
    `PlannedSamples`), and images are not decoded here unless `validate_images` (the dry run). A
    finished record costs its id only: read from the work folder's record index when it matches the
    source file (`generation.sources.record_index`), and that index is written by this pass when not."""
    finished = checkpoint.finished_ids()
    quarantined = set(checkpoint.quarantined(finished))
    only = options.only_ids
    if options.retry:
        only = quarantined if only is None else only & quarantined
        done = finished
    else:
        done = finished | quarantined
    todo: set[str] = set()
    failures: list[Quarantined] = []
    total = skipped = 0
    duplicates: list[str] = []
    seen: set[str] = set()

    def not_planned(sample_id: str) -> bool:  # such a record's Sample is never built (the loop skips it below)
        return (sample_id in done or (only is not None and sample_id not in only)
                or not in_worker_slice(sample_id, options))

    index = record_index(checkpoint)
    for item in iter_samples(config, validate_images, skip=not_planned, index=index):
        sample_id = item_id(item)
        if not in_worker_slice(sample_id, options):
            continue
        if only is not None and sample_id not in only:
            continue
        if sample_id in seen:
            duplicates.append(sample_id)
            continue
        seen.add(sample_id)
        total += 1
        if sample_id in done:
            skipped += 1
            continue
        if options.limit is not None and len(todo) + len(failures) >= options.limit:
            continue
        if isinstance(item, Quarantined):
            failures.append(item)
        else:
            todo.add(sample_id)
    if duplicates:
        log.warning("%d ids come from more than one `sources:` entry (e.g. %s); each is generated once, from the "
                    "first entry: is a source listed twice?", len(duplicates), ", ".join(duplicates[:3]))
    return Plan(PlannedSamples(config, options, todo, validate_images, index), failures, total, skipped)


def describe_plan(config: PipelineConfig, options: RunOptions) -> str:
    """`mmat generate --dry-run`: the plan, the operators available here, the teacher and an upper
    bound of its calls and cost, before any teacher call is paid for (see the module docstring)."""
    from generation.teachers.factory import missing_api_key
    from generation.teachers.prices import cached_estimate, how_to_set_prices, teacher_prices
    from operators.registry import build_operators

    work_dir = resolve_work_dir(config, Path(options.out_dir))
    checkpoint = Checkpoint(work_dir, worker=worker_name(options), readonly=True)
    plan = make_plan(config, options, checkpoint, validate_images=True)
    by_source: Counter = Counter()
    questions = most = 0
    for sample in plan.todo:  # streamed: counts only
        by_source[sample.source] += 1
        questions += len(sample.qas)
        most = max(most, len(sample.qas))  # teacher.batch: a sample's calls are rounds, one after another
    todo = plan.todo
    # per question: up to max_steps steps, general (+math) reflection, final answer
    calls_per_question = config.rationale.max_steps + (2 if config.rationale.reflection else 0) + 1
    calls = questions * calls_per_question + (len(todo) if config.teacher.judge else 0)
    teacher = config.teacher
    prices = teacher_prices(teacher)
    if prices is None:
        cost_line = f"estimated cost: unknown ({how_to_set_prices(teacher)})"
    else:
        cost = calls * (EST_PROMPT_TOKENS * prices.prompt_per_1m + EST_COMPLETION_TOKENS * prices.completion_per_1m) / 1e6
        cost_line = f"estimated cost: up to ${cost:,.2f}" + (
            " (offline teacher: free)" if teacher.kind == "offline" else
            " (local model: free)" if teacher.kind == "llamacpp" and teacher.prices is None else
            f" at ~{EST_PROMPT_TOKENS}+{EST_COMPLETION_TOKENS} tokens per call, "
            f"${prices.prompt_per_1m:g}/${prices.completion_per_1m:g} per 1M prompt/completion tokens")
        if prices.prompt_per_1m or prices.completion_per_1m:  # issue 31: the cache's share of the prompt
            cost_line += "; " + cached_estimate(prices, calls, EST_PROMPT_TOKENS, EST_COMPLETION_TOKENS)
    operators = build_operators(config.operators, None)  # no cache: a dry run creates no folder
    lines = [
        f"plan for {options.out_dir} (worker {options.shard_index + 1} of {options.num_shards})",
        "sources: " + ", ".join(f"{s.kind} ({s.path or s.hub_id})" for s in config.sources),
        f"samples: {plan.total} in this slice, {plan.skipped} done before, {len(todo)} to run, "
        f"{len(plan.foundation_failures)} already failing the foundation stage",
        "to run per source: " + (", ".join(f"{k}={v}" for k, v in sorted(by_source.items())) or "none"),
        f"operators available: {', '.join(operators.available) or 'none'}",
    ]
    lines += [f"operator unavailable: {name}: {why}" for name, why in operators.unavailable.items()]
    model = OFFLINE_MODEL if teacher.kind == "offline" else teacher.model
    if teacher.kind == "llamacpp" and teacher.model_path and not teacher.base_url:
        from generation.teachers.llamacpp import model_alias

        model = f"{model_alias(teacher.model_path)}, a llama.cpp server the run starts"
    lines += [
        f"teacher: {teacher.kind} ({model}{', ' + teacher.base_url if teacher.base_url else ''}), "
        f"concurrency {config.samples_in_flight}",
        f"estimated teacher calls: up to {calls:,} ({questions} questions x {calls_per_question}"
        + (f" + {len(todo)} judge calls)" if config.teacher.judge else ")"),
        cost_line,
    ]
    if teacher.batch:
        from generation.teachers.batch_client import dry_run_line

        lines.append(dry_run_line(cost if prices is not None else None, most * calls_per_question,
                                  config.samples_in_flight))
    key_problem = missing_api_key(teacher)
    if key_problem:
        lines.append(f"API key: missing: {key_problem}; the run would stop before its first call")
    lines.append(f"work folder: {work_dir}")
    return "\n".join(lines)
