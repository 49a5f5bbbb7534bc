"""The dataset folder rebuilt from the checkpoint: this worker's shards, then the card.

The checkpoint is the truth; the folder is derived from it at the end of every run (and again by a
rerun after a crash). Each (source, split) group of this worker's slice is written by
`generation.writer` (atomically per file; a group whose shards already hold exactly its rows is left
alone), reading finished records one at a time from the checkpoint, so memory does not grow with the
dataset. The run's resolved config is written beside them (`mmat_config.yaml`,
`generation.config_snapshot`); the folder is then audited (`generation.quality.audit`: the numbers go
to run.log and the card's Quality section) and the card re-rendered from every shard in the folder,
unless neither the shard files, the config snapshot nor the quarantine changed since the card was
last written (a rerun with nothing to do keeps it, and skips the audit).

Shards and card are written under the dataset folder's lock (`generation.folder_lock`), so the
workers of a sharded run take turns and every card describes a folder no worker is rewriting; the
card is rendered from all shards in the folder (every worker's), so the last worker to finish leaves
the complete card.

Rolling shards (`RollingShards`): while the samples run, a background thread looks at the checkpoint
every `output.rolling_check_s` seconds and gives each group that has gathered
`output.rolling_shard_rows` finished rows not yet in any of its files a new part file (sorted by id),
under the same lock, so the folder is loadable with what is finished mid-run; a group with parts gets
only its tail at the end (`generation.writer`, "Rolling shards"). It reads ids from the checkpoint's
index and the shards' id columns, never rows it does not write. The audit and the card at the end read
every shard of the folder (nothing is read ahead or kept between runs: at a hosted teacher's latency
the end is a few percent of a run; README "Long runs").
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from generation.atomic import write_atomic
from generation.checkpoint import Checkpoint, QuarantineRecord, RecordRef, index_path, index_tail
from generation.config import PipelineConfig
from generation.folder_lock import out_folder_lock
from generation.plan import RunOptions, in_worker_slice
from generation.writer import WriterSettings, clean_stale_temps, has_parts, ids_in_files, write_group, write_part
from mmat_1m import FORMATS

log = logging.getLogger("mmat.runner")
# (out_dir, run_stats=..., quality_report=...) -> the card's path: `publishing.card.write_card`
CardWriter = Callable[..., Any]
CARD_STAMP = "card-stamp.json"  # in the work folder: the inputs of the card last written (`card_inputs`)


def writer_settings(config: PipelineConfig, options: RunOptions) -> WriterSettings:
    return WriterSettings(shard_max_bytes=config.output.shard_max_bytes, row_group_rows=config.output.row_group_rows,
                          worker_index=options.shard_index, num_workers=options.num_shards)


def _groups(refs: list[RecordRef], options: RunOptions) -> dict[tuple[str, str], list[RecordRef]]:
    groups: dict[tuple[str, str], list[RecordRef]] = {}
    for ref in refs:
        if in_worker_slice(ref.id, options):
            groups.setdefault((ref.source, ref.split), []).append(ref)
    return groups


def _rows(checkpoint: Checkpoint, refs: list[RecordRef], fmt: str):
    return (checkpoint.materialise(checkpoint.load(r), fmt) for r in refs)


def _tail(out_dir: Path, fmt: str, source: str, split: str, refs: list[RecordRef],
          settings: WriterSettings) -> Optional[list[RecordRef]]:
    """The refs of the group no file holds yet, when the group's files add up (see `ids_in_files`) and
    hold none of this worker's ids that are not finished; None: rewrite the group whole."""
    in_files = ids_in_files(out_dir, fmt, source, split)
    if in_files is None:
        return None
    if settings.num_workers == 1 and not in_files <= {r.id for r in refs}:
        return None
    return [r for r in refs if r.id not in in_files]


def write_shards(checkpoint: Checkpoint, out_dir: Path, config: PipelineConfig, options: RunOptions,
                 refs: Optional[list[RecordRef]] = None) -> dict[str, int]:
    """Rebuild this worker's shards from every finished record of its slice (whichever worker's rows
    file holds it), grouped and sorted by id; groups whose shards already hold those rows are kept, and
    a group that has rolling parts gets only the rows its files lack.
    `refs`: `checkpoint.finished_refs()` when the caller has them already (one pass over the files).
    Returns the rows written per `format/split`."""
    settings = writer_settings(config, options)
    clean_stale_temps(out_dir, settings)
    counts: Counter = Counter()
    for (source, split), group in sorted(_groups(checkpoint.finished_refs() if refs is None else refs,
                                                 options).items()):
        group.sort(key=lambda r: r.id)
        ids = [r.id for r in group]
        for fmt in FORMATS:
            tail = _tail(out_dir, fmt, source, split, group, settings) \
                if has_parts(out_dir, fmt, source, split, settings) else None
            if tail is not None:
                if tail:
                    write_part(out_dir, fmt, source, split, _rows(checkpoint, tail, fmt), settings)
                counts[f"{fmt}/{split}"] += len(group)
                continue
            written = write_group(out_dir, fmt, source, split, _rows(checkpoint, group, fmt), settings, ids=ids)
            counts[f"{fmt}/{split}"] += written.rows
    return dict(counts)


class RollingShards:
    """Part files written while the run goes (see the module docstring). `with RollingShards(...):`
    around the executor; leaving it waits for a part being written (never half a part: a kill at any
    moment leaves temp files only, which the next run removes).

    Each pass reads only what the rows files' indexes gained since the last one (complete lines), and
    holds only the finished rows not yet in parts (at most about `rolling_shard_rows` per group) plus
    the ids each group's files hold: re-reading the whole checkpoint every pass cost seconds of CPU per
    pass at 200k finished samples, and its transient lists were most of the run's RSS growth."""

    def __init__(self, checkpoint: Checkpoint, out_dir: Path, config: PipelineConfig, options: RunOptions) -> None:
        self.checkpoint = checkpoint
        self.out_dir = Path(out_dir)
        self.options = options
        self.settings = writer_settings(config, options)
        self.rows = config.output.rolling_shard_rows
        self.every_s = config.output.rolling_check_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._in_files: dict[tuple[str, str, str], set[str]] = {}  # (fmt, source, split) -> ids in its files
        self._read: dict[Path, int] = {}  # index file -> bytes of complete lines read
        self._end: dict[Path, int] = {}  # index file -> where in its rows file the last entry read ends
        self._pending: dict[tuple[str, str], dict[str, RecordRef]] = {}  # group -> id -> ref, not in parts yet
        self._whole: set[tuple[str, str]] = set()  # groups whose files do not add up: the end rewrites them
        self.parts_written = 0
        self.error: Optional[BaseException] = None

    def __enter__(self) -> "RollingShards":
        if self.rows > 0:
            self._thread = threading.Thread(target=self._loop, name="rolling-shards", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.roll()
            except Exception as exc:  # noqa: BLE001 - the end of the run writes what this could not
                self.error = exc
                log.warning("rolling shards: %s; the end of the run writes the rest", exc)
                return

    def _new_refs(self) -> Iterator[RecordRef]:
        """The finished records every rows file's index gained since the last call (`index_tail`: an
        entry is written after its line is durable; a line not indexed yet shows next time, or the end
        writes it)."""
        for rows_path in self.checkpoint.rows_files():
            idx = index_path(rows_path)
            entries, used = index_tail(rows_path, self._read.get(idx, 0), self._end.get(idx, 0))
            if not entries:
                continue
            self._read[idx] = self._read.get(idx, 0) + used
            self._end[idx] = entries[-1][1]
            for start, _, sample_id, source, split in entries:
                yield RecordRef(sample_id, source, split, rows_path, start)

    def _files(self, fmt: str, source: str, split: str) -> Optional[set[str]]:
        key = (fmt, source, split)
        if key not in self._in_files:
            known = ids_in_files(self.out_dir, fmt, source, split)
            if known is None:
                return None
            self._in_files[key] = known
        return self._in_files[key]

    def roll(self) -> int:
        """One pass: a part for every group with enough new rows. Returns the parts written."""
        written = 0
        for ref in self._new_refs():
            group = (ref.source, ref.split)
            if group not in self._whole and in_worker_slice(ref.id, self.options):
                self._pending.setdefault(group, {}).setdefault(ref.id, ref)  # the first durable copy wins
        for (source, split), pending in sorted(self._pending.items()):
            files = [self._files(fmt, source, split) for fmt in FORMATS]
            if any(ids is None for ids in files):
                self._whole.add((source, split))
                pending.clear()
                continue
            for sample_id in [i for i in pending if all(i in ids for ids in files)]:
                del pending[sample_id]  # in every format's files already (an earlier run's, or a part)
            if len(pending) < self.rows:
                continue
            new = sorted(pending.values(), key=lambda r: r.id)
            for fmt, ids in zip(FORMATS, files):
                if self._stop.is_set() and written:
                    return written
                todo = [r for r in new if r.id not in ids]
                if not todo:
                    continue
                with out_folder_lock(self.out_dir):
                    write_part(self.out_dir, fmt, source, split, _rows(self.checkpoint, todo, fmt), self.settings)
                ids.update(r.id for r in todo)
                written += 1
                self.parts_written += 1
            pending.clear()
        return written


def card_inputs(out_dir: Path, quarantine_by_stage: dict[str, int]) -> str:
    """What the card is rendered from: every parquet file of the folder (name, size, mtime), the config
    snapshot and the quarantine counts. A rerun that finds them as the last card saw them (`CARD_STAMP` in the work
    folder) keeps the card instead of reading every shard again."""
    from generation.config_snapshot import CONFIG_FILENAME

    files = sorted((str(p.relative_to(out_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in (out_dir / "data").rglob("*.parquet"))
    snapshot = out_dir / CONFIG_FILENAME
    config = snapshot.read_text(encoding="utf-8") if snapshot.is_file() else None
    return json.dumps({"files": files, "config": config, "quarantine_by_stage": quarantine_by_stage}, sort_keys=True)


def rebuild_folder(checkpoint: Checkpoint, config: PipelineConfig, options: RunOptions, elapsed_s: float,
                   write_card: Optional[CardWriter] = None
                   ) -> tuple[dict[str, int], set[str], dict[str, QuarantineRecord]]:
    """Shards and card (see the module docstring). Returns (rows per `format/split`, every finished
    id, every quarantined record not finished since), over the whole checkpoint.

    `write_card` renders the card (`publishing.card.write_card`, which `publishing.run` passes): the
    engine sits below what publishes its output and does not import it. Without one the shards are
    written and the card is left as it is (`mmat card --write DIR` renders it)."""
    from mmat_1m import CARD_FILENAME, card_configs
    from generation.config_snapshot import write_config_snapshot
    from generation.quality.audit import audit_run

    out_dir = Path(options.out_dir)
    refs = checkpoint.finished_refs()
    finished = {ref.id for ref in refs}
    quarantined = checkpoint.quarantined(finished)
    with out_folder_lock(out_dir):
        rows = write_shards(checkpoint, out_dir, config, options, refs)
        for stale in [(out_dir / CARD_FILENAME).with_suffix(".md.tmp"), *out_dir.glob(".tmp-*"),
                      *out_dir.glob("figures/**/.tmp-*")]:  # a killed card write (`generation.atomic` temps)
            stale.unlink(missing_ok=True)
        if card_configs(out_dir):
            write_config_snapshot(config, out_dir)
            by_stage = dict(Counter(r.stage for r in quarantined.values()))
            inputs = card_inputs(out_dir, by_stage)
            stamp = Path(checkpoint.dir) / CARD_STAMP
            if (write_card is not None and (out_dir / CARD_FILENAME).is_file() and stamp.is_file()
                    and stamp.read_text() == inputs):
                log.info("dataset folder up to date (same shards, config and quarantine): card kept")
            else:
                report = audit_run(out_dir, quarantined.values())  # to run.log (and the card)
                if write_card is None:
                    log.info("no card writer given: shards written, %s left as it is (`mmat card --write %s` "
                             "renders it)", CARD_FILENAME, out_dir)
                else:
                    write_card(out_dir, run_stats={"quarantined_total": len(quarantined),
                                                   "quarantine_by_stage": by_stage,
                                                   "generation_elapsed_s": round(elapsed_s, 2)},  # up to this end
                               quality_report=report)
                    write_atomic(stamp, inputs, tmp_prefix=checkpoint.tmp_prefix)
        else:
            log.warning("no finished samples: no shards and no card in %s", out_dir)
    return rows, finished, quarantined
