"""The dataset folder rebuilt from the checkpoint: this worker's shards, then the card.

The checkpoint is the truth; the folder is derived from it at the end of every run (and again by a
rerun after a crash). Each (source, split) group of this worker's slice is written by
`generation.writer` (atomically per file; a group whose shards already hold exactly its rows is left
alone), reading finished records one at a time from the checkpoint, so memory does not grow with the
dataset. The run's resolved config is written beside them (`mmat_config.yaml`,
`generation.config_snapshot`); the folder is then audited (`generation.quality.audit`: the numbers go
to run.log and the card's Quality section) and the card re-rendered from every shard in the folder.

Shards and card are written under the dataset folder's lock (`generation.folder_lock`), so the
workers of a sharded run take turns and every card describes a folder no worker is rewriting; the
card is rendered from all shards in the folder (every worker's), so the last worker to finish leaves
the complete card.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Optional

from generation.checkpoint import Checkpoint, QuarantineRecord, RecordRef
from generation.config import PipelineConfig
from generation.folder_lock import out_folder_lock
from generation.plan import RunOptions, in_worker_slice
from generation.writer import WriterSettings, clean_stale_temps, write_group
from mmat_1m import FORMATS

log = logging.getLogger("mmat.runner")


def writer_settings(config: PipelineConfig, options: RunOptions) -> WriterSettings:
    return WriterSettings(shard_max_bytes=config.output.shard_max_bytes, row_group_rows=config.output.row_group_rows,
                          worker_index=options.shard_index, num_workers=options.num_shards)


def write_shards(checkpoint: Checkpoint, out_dir: Path, config: PipelineConfig, options: RunOptions,
                 refs: Optional[list[RecordRef]] = None) -> dict[str, int]:
    """Rebuild this worker's shards from every finished record of its slice (whichever worker's rows
    file holds it), grouped and sorted by id; groups whose shards already hold those rows are kept.
    `refs`: `checkpoint.finished_refs()` when the caller has them already (one pass over the files).
    Returns the rows written per `format/split`."""
    settings = writer_settings(config, options)
    clean_stale_temps(out_dir, settings)
    groups: dict[tuple[str, str], list] = {}
    for ref in checkpoint.finished_refs() if refs is None else refs:
        if in_worker_slice(ref.id, options):
            groups.setdefault((ref.source, ref.split), []).append(ref)
    counts: Counter = Counter()
    for (source, split), refs in sorted(groups.items()):
        refs.sort(key=lambda r: r.id)
        ids = [r.id for r in refs]
        for fmt in FORMATS:
            rows = (checkpoint.materialise(checkpoint.load(r), fmt) for r in refs)
            written = write_group(out_dir, fmt, source, split, rows, settings, ids=ids)
            counts[f"{fmt}/{split}"] += written.rows
    return dict(counts)


def rebuild_folder(checkpoint: Checkpoint, config: PipelineConfig, options: RunOptions, elapsed_s: float
                   ) -> tuple[dict[str, int], set[str], dict[str, QuarantineRecord]]:
    """Shards and card (see the module docstring). Returns (rows per `format/split`, every finished
    id, every quarantined record not finished since), over the whole checkpoint."""
    from mmat_1m import card_configs
    from generation.config_snapshot import write_config_snapshot
    from generation.quality.audit import audit_run
    from publishing.card import CARD_FILENAME, write_card

    out_dir = Path(options.out_dir)
    refs = checkpoint.finished_refs()
    finished = {ref.id for ref in refs}
    quarantined = checkpoint.quarantined(finished)
    with out_folder_lock(out_dir):
        rows = write_shards(checkpoint, out_dir, config, options, refs)
        (out_dir / CARD_FILENAME).with_suffix(".md.tmp").unlink(missing_ok=True)  # a killed card write
        if card_configs(out_dir):
            write_config_snapshot(config, out_dir)
            write_card(out_dir, run_stats={
                "quarantined_total": len(quarantined),
                "quarantine_by_stage": dict(Counter(r.stage for r in quarantined.values())),
                "elapsed_s": round(elapsed_s, 2),
            }, quality_report=audit_run(out_dir))  # the audit's numbers go to run.log and the card
        else:
            log.warning("no finished samples: no shards and no card in %s", out_dir)
    return rows, finished, quarantined
