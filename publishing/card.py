"""The dataset card: `README.md` of the dataset folder, rendered from `cards/dataset_card.md.j2`.

The card is a pure function of what the folder records: its parquet shards, the run's facts the
generation run kept beside them (`publishing.card_sections.RUN_FACTS_FILENAME`; `run_stats` given here
replaces them), and the version/changelog already in an existing card. So the card a run writes, the one
`mmat push` uploads and the one `mmat card --write` renders are the same text. Its numbers come from
`publishing.card_stats` (parquet metadata and the non-image columns of `mmat_1m.FEATURES`), its
version and changelog from `publishing.changelog`, its example dialogues from `publishing.examples`,
its license table from `SOURCE_LICENSES` here, one entry per source. Its YAML front matter carries the
`configs:` list from `mmat_1m.card_configs` (what makes `load_dataset(folder_or_repo, "orr")` work)
and `dataset_info` with what `datasets` reads from it: each config's split sizes (so `load_dataset`
checks the rows it reads against the card). The features are not repeated per config (they were 90% of
the YAML): every shard carries them in its parquet schema (`huggingface` metadata), which `datasets`
reads.

    write_card(Path("mmat-1m"), version="1.0.0", changelog=["First release."], run_stats={...})
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from generation.config_snapshot import CONFIG_FILENAME
from generation.redact import redact_fields
from mmat_1m import CONFIGS, FEATURES, FORMATS, SOURCES, SPLITS, card_configs
from operators import OPERATOR_NAMES
from publishing.source_licenses import SOURCE_LICENSES, SourceLicense  # noqa: F401  (re-exported)
from publishing.card_sections import (citations, code, limitations, read_run_facts, snippet_configs,
                                      teacher_sentence, teacher_summary, write_run_facts)
from publishing.examples import md_text
from publishing.card_terminal import render_card_terminal  # noqa: F401 (`mmat card`, push: the card's names)
from publishing.card_stats import TOKEN_PATTERN, CardStats, collect_stats, config_split_counts
from publishing.changelog import (auto_changes, changelog_entry, merge_changelogs, read_card_metadata,
                                  split_counts_from_meta)

from mmat_1m import CARD_FILENAME  # noqa: E402,F401  (one definition; re-exported)
QUARANTINE_KEYS_FACT = "quarantine_by_stage_error"  # run fact: "stage/error type" -> samples
LICENSE_FILENAME = "LICENSE.md"
FIGURE_PATH = "figures/stats.png"
QUALITY_FIGURE_PATH = "figures/quality.png"
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "cards"
TEMPLATE_NAME = "dataset_card.md.j2"


# Who made what: the questions and answers come from the sources (found), the rationales, operator
# calls and reflections are the teacher's (machine-generated).
ANNOTATIONS_CREATORS = ["machine-generated"]
LANGUAGE_CREATORS = ["found", "machine-generated"]


# -------------------------------------------------------------------------------------- yaml
def dataset_infos(config_counts: dict[str, dict[str, tuple[int, int, int]]], features: bool = False):
    """`datasets.DatasetInfosDict` of the folder: the split sizes of every config (and `FEATURES` with
    `features`; the card leaves them to the shards' own schema)."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    infos = DatasetInfosDict()
    for name in sorted(config_counts):
        splits = config_counts[name]
        split_dict = SplitDict()
        for split, (rows, num_bytes, _) in splits.items():
            split_dict.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=rows))
        infos[name] = DatasetInfo(features=FEATURES if features else None, splits=split_dict, config_name=name,
                                  download_size=sum(d for _, _, d in splits.values()),
                                  dataset_size=sum(b for _, b, _ in splits.values()))
    return infos


def card_metadata(root: Path, stats: CardStats, counts: dict, present_sources: list[str], *,
                  version: Optional[str], changelog: list[dict], extra: Optional[dict] = None):
    """The card's YAML front matter as `huggingface_hub.DatasetCardData`: the Hub's fields, then the
    `configs:` and `dataset_info:` that `datasets` writes itself (`MetadataConfigs`, `DatasetInfosDict`).
    `extra` adds fields (e.g. `generation_config`)."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    known = [s for s in present_sources if s in SOURCE_LICENSES]
    data = DatasetCardData(
        pretty_name="MMAT-1M (open reimplementation)",
        language=["en"],
        license="other",
        license_name="mixed-per-source",
        license_link=LICENSE_FILENAME,
        license_details="Each row keeps the license of its source dataset; see the Licenses section.",
        annotations_creators=list(ANNOTATIONS_CREATORS),
        language_creators=list(LANGUAGE_CREATORS),
        multilinguality=["monolingual"],
        source_datasets=[f"extended|{SOURCE_LICENSES[s].upstream}" for s in known],
        source_licenses={s: (SOURCE_LICENSES[s].license_id if s in SOURCE_LICENSES else "unknown") for s in present_sources},
        source_license_links={s: SOURCE_LICENSES[s].license_link for s in known},
        task_categories=["image-text-to-text", "visual-question-answering"],
        tags=["multimodal", "agent", "tool-use", "chain-of-thought", "reflection", "rag", "synthetic", "mmat-1m"],
        size_categories=[size_category(max(stats.formats[f].rows for f in FORMATS))],
        **(extra or {}),
    )
    MetadataConfigs({c["config_name"]: {k: v for k, v in c.items() if k != "config_name"}
                     for c in card_configs(root)}).to_dataset_card_data(data)
    dataset_infos(counts).to_dataset_card_data(data)
    if version:
        data["version"] = version
    if changelog:
        data["changelog"] = changelog
    return data


def render_license_file(present_sources: list[str]) -> str:
    """`LICENSE.md` (the card's `license_link`): each source's license and where its upstream states it."""
    lines = ["# Licenses of MMAT-1M (open reimplementation)", "",
             "Each row keeps the license of its source dataset (column `source`); the generated rationales "
             "add no further restriction.", "",
             "| source | upstream | license | stated at | note |", "|---|---|---|---|---|"]
    for s in present_sources:
        lic = SOURCE_LICENSES.get(s)
        lines.append(f"| `{s}` | [{lic.name}]({lic.url}) | {lic.license} | {lic.license_link} | {lic.note} |" if lic
                     else f"| `{s}` | – | unknown | – | not a known mmat-1m source |")
    return "\n".join(lines) + "\n"


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


def sources_present(stats: CardStats) -> list[str]:
    """The sources the shards hold: the known ones in their canonical order, then any other."""
    seen = {source for (_, source, _) in stats.rows}
    return [s for s in SOURCES if s in seen] + sorted(seen - set(SOURCES))


def operator_order(stats: CardStats) -> list[str]:
    """The operators in their canonical order, then any other the shards name."""
    seen = {op for f in FORMATS for op in stats.formats[f].operator_calls}
    return list(OPERATOR_NAMES) + sorted(seen - set(OPERATOR_NAMES))


# ---------------------------------------------------------------------------------------- figure
def render_figure(stats: CardStats, path: str | Path) -> Path:
    """Operator usage (calls per operator, RR and ORR) and turns per dialogue, as one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    names = operator_order(stats)
    y = np.arange(len(names))
    for k, fmt in enumerate(FORMATS):
        calls = [stats.formats[fmt].operator_calls.get(op, 0) for op in names]
        ax1.barh(y + (k - 0.5) * 0.4, calls, height=0.4, label=fmt.upper())
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("calls")
    ax1.set_title("Operator usage")
    ax1.legend()
    for k, fmt in enumerate(FORMATS):
        hist = stats.formats[fmt].turn_hist
        if hist:
            xs = sorted(hist)
            ax2.bar(np.array(xs) + (k - 0.5) * 0.4, [hist[x] for x in xs], width=0.4, label=fmt.upper())
    ax2.set_xlabel("assistant turns per dialogue")
    ax2.set_ylabel("dialogues")
    ax2.set_title("Turns per dialogue")
    ax2.legend()
    fig.tight_layout()
    from generation.atomic import atomic_file

    with atomic_file(path, suffix=".png") as fh:  # a published figure is whole or absent
        fig.savefig(fh, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ rendering
def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{md_text(str(k), 120)}: {_fmt_value(v)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt_value(v) for v in value) or "–"
    return md_text(str(value), 400)


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: f"{v:,}"
    env.filters["cell"] = _fmt_value
    env.filters["code"] = code
    env.filters["text"] = lambda v: md_text(str(v), 400)
    return env.get_template(TEMPLATE_NAME)


def render_card(
    dataset_dir: str | Path,
    *,
    version: Optional[str] = None,
    changelog: Optional[list[str]] = None,
    run_stats: Optional[dict] = None,
    repo_id: Optional[str] = None,
    figure: Optional[str] = FIGURE_PATH,
    stats: Optional[CardStats] = None,
    previous_card: str | Path | None = None,
    examples: Optional[list[dict]] = None,
    quality: Optional[str] = None,
) -> str:
    """The card text for the folder. `figure` is the PNG's path relative to the folder (None: no figure);
    `examples` the example dialogues (default: `publishing.examples.example_dialogues`, linking the
    example images already in the folder); `quality` the Quality section's body (default: the audit of
    the folder's shards, `quality_section`)."""
    from publishing.examples import example_dialogues

    root = Path(dataset_dir)
    stats = stats or collect_stats(root)
    configs = card_configs(root)
    if not configs:
        raise FileNotFoundError(f"no parquet shards under {root / 'data'}; nothing to describe")
    counts = config_split_counts(root, stats)
    current = {name: {s: r for s, (r, _, _) in splits.items()} for name, splits in counts.items()}
    meta = read_card_metadata(root / CARD_FILENAME)
    # The row counts of the last released card are what an automatic changelog line compares against:
    # the local card's when it was released (it has a version), else none (a first release).
    released = meta if meta.get("version") else {}
    if previous_card is not None:
        # Another copy of this card (the one on the Hub) is the latest release: its changelog joins the
        # history and its split sizes are the baseline.
        other = read_card_metadata(previous_card)
        meta = {**meta, "changelog": merge_changelogs(meta.get("changelog") or [], other.get("changelog") or []),
                "version": meta.get("version") or other.get("version")}
        released = other if other.get("dataset_info") else released
    auto = auto_changes(split_counts_from_meta(released), current, stats)
    card_version, log = changelog_entry(meta, version, changelog, auto)

    present_sources = sources_present(stats)
    licenses = [(s, SOURCE_LICENSES.get(s)) for s in present_sources]
    config_file = (root / CONFIG_FILENAME).is_file()
    metadata = card_metadata(root, stats, counts, present_sources, version=card_version, changelog=log,
                             extra={"generation_config": CONFIG_FILENAME} if config_file else None)
    front = metadata.to_yaml() + "\n"

    fmt_rows = {}
    for fmt in FORMATS:
        fs = stats.formats[fmt]
        fmt_rows[fmt] = {
            "rows": fs.rows,
            "avg_turns": fs.turns / fs.rows if fs.rows else 0.0,
            "avg_tokens": fs.tokens / fs.rows if fs.rows else 0.0,
            "avg_images": fs.images / fs.rows if fs.rows else 0.0,
            "tokens": fs.tokens,
        }
    operators = operator_order(stats)
    operator_rows = [
        {"name": op, **{f"{fmt}_calls": stats.formats[fmt].operator_calls.get(op, 0) for fmt in FORMATS},
         **{f"{fmt}_dialogues": stats.formats[fmt].operator_dialogues.get(op, 0) for fmt in FORMATS},
         "backends": ", ".join(f"{code(b)} ({n:,})" for b, n in stats.operator_backends[op].most_common()) or "-"}
        for op in operators
    ]
    reflection_kinds = ["none", "general", "math"] + sorted(
        {k for f in FORMATS for k in stats.formats[f].reflections} - {"none", "general", "math"})
    source_rows = [
        {
            "source": code(s),
            "name": SOURCE_LICENSES[s].name if s in SOURCE_LICENSES else md_text(s, 200),
            "subsets": ", ".join(f"{md_text(sub, 120)} ({n:,})" for sub, n in sorted(stats.subsets[s].items())) or "–",
            **{f"{fmt}_{split}": stats.rows.get((fmt, s, split), 0) for fmt in FORMATS for split in SPLITS},
            **{fmt: sum(stats.rows.get((fmt, s, split), 0) for split in SPLITS) for fmt in FORMATS},
        }
        for s in present_sources
    ]
    config_rows = [
        {"name": spec.name, "description": spec.description,
         **{split: counts[spec.name].get(split, (0, 0, 0))[0] for split in SPLITS},
         "total": sum(r for r, _, _ in counts[spec.name].values())}
        for spec in CONFIGS if spec.name in counts
    ]
    total_tokens = stats.prompt_tokens + stats.completion_tokens
    run = redact_fields(dict(run_stats if run_stats is not None else read_run_facts(root)))
    present_configs = [c["config_name"] for c in configs]
    whole_config, source_config = snippet_configs(present_configs)
    teachers = teacher_summary(stats)
    return _template().render(
        front_matter=front,
        version=card_version,
        changelog=log,
        repo_id=repo_id or "path/to/mmat-1m",
        revision=f"v{card_version}" if card_version else None,
        figure=figure,
        stats=stats,
        formats=FORMATS,
        splits=SPLITS,
        fmt_rows=fmt_rows,
        operator_rows=operator_rows,
        reflection_kinds=reflection_kinds,
        reflections={f: stats.formats[f].reflections for f in FORMATS},
        source_rows=source_rows,
        config_rows=config_rows,
        licenses=licenses,
        teacher_models=[(code(m), n) for m, n in stats.teacher_models.most_common()],
        teacher_sentence=teacher_sentence(teachers),
        limits=limitations(stats, teachers),
        whole_config=whole_config,
        source_config=source_config,
        source_split=next(iter(counts[source_config])) if source_config else None,
        view_config="rr" if "rr" in present_configs else whole_config,  # RR shows every step
        citations=citations(present_sources, _engine_version()),
        total_tokens=total_tokens,
        cost_usd=stats.cost_usd,
        cost_per_dialogue=(stats.cost_usd / stats.dialogues) if stats.dialogues else 0.0,
        tokens_per_dialogue=(total_tokens / stats.dialogues) if stats.dialogues else 0.0,
        run_stats=run,
        quarantine=_quarantine_line(run),
        token_pattern=TOKEN_PATTERN,
        has_tabmwp="tabmwp" in present_sources,
        tabmwp_configs=", ".join(f"`{n}`" for n in present_configs if n in ("rr", "orr", "rr-tabmwp", "orr-tabmwp")),
        examples=examples if examples is not None else example_dialogues(root),
        source_names={s: SOURCE_LICENSES[s].name for s in SOURCE_LICENSES},
        licenses_code={s: code(s) for s in present_sources},
        generation_config=CONFIG_FILENAME if config_file else None,
        license_file=LICENSE_FILENAME,
        quality=quality if quality is not None else quality_section(root),
    )


def _engine_version() -> str:
    from generation.schema import ENGINE_VERSION

    return ENGINE_VERSION


def quality_section(root: Path, report: Any = None, write_figure: bool = False,
                    quarantined: Optional[dict] = None) -> str:
    """The Quality section (`generation.quality`): the audit of the folder's RR rows (ORR when it has none)
    as a table, then RR and ORR side by side, with `figures/quality.png` (written with `write_figure`, else linked when present). An audit
    that fails leaves the card without the section, with a warning, rather than without a card."""
    from generation.quality.audit import audit_dataset
    from publishing.quality_section import render_figure as render_quality_figure
    from publishing.quality_section import report_markdown

    try:
        if report is None:  # RR, with the ORR rows' audit paired to it (the section shows them side by side)
            formats = [f for f in ("rr", "orr") if any((root / "data" / f).glob("*/*.parquet"))] or ["rr"]
            report = audit_dataset(root, formats[0])
            if len(formats) > 1:
                report.paired = audit_dataset(root, formats[1])
            if quarantined is not None:  # the run's quarantine, as its facts keep it (repairs rejected)
                report.quarantined = dict(quarantined)
        if write_figure:
            render_quality_figure(report, root / QUALITY_FIGURE_PATH)
        return report_markdown(report, figure=QUALITY_FIGURE_PATH if (root / QUALITY_FIGURE_PATH).is_file() else None)
    except Exception as exc:  # the card matters more than its Quality section
        logging.getLogger(__name__).warning("no Quality section in the card: %s: %s", type(exc).__name__, exc,
                                            exc_info=True)
        return ""


def _quarantine_line(run: dict) -> Optional[str]:
    """"3 (foundation 2, rationale 1)" from the run's quarantine counts, or None when the card was
    written without a generation run."""
    if "quarantined_total" not in run:
        return None
    by_stage = run.get("quarantine_by_stage") or {}
    detail = ", ".join(f"{stage} {n:,}" for stage, n in sorted(by_stage.items()) if isinstance(n, int))
    total = run["quarantined_total"]
    return f"{total:,}" + (f" ({detail})" if detail and isinstance(total, int) and total else "")


def write_card(
    dataset_dir: Path,
    *,
    version: str | None = None,
    changelog: list[str] | None = None,
    run_stats: dict | None = None,
    repo_id: str | None = None,
    previous_card: str | Path | None = None,
    quality_report: Any = None,
) -> Path:
    """Render `dataset_dir/README.md` (with `figures/stats.png` and the example dialogues' images under
    `figures/examples/`) from the shards in the folder.

    `version` (e.g. "1.1.0" or "v1.1.0") adds or replaces that version's changelog entry, whose lines are
    `changelog` (default: a summary of the row-count changes since the previous card); earlier entries
    of an existing card are kept. Without `version` the existing version and changelog are kept as they
    are. `run_stats` (quarantine counts, wall time, ...; what the run's end passes) is shown with
    secret-looking keys and values redacted, and kept beside the data (`RUN_FACTS_FILENAME`); without it
    the facts kept there by the last run are shown, so a push or re-render writes the run's card again. `repo_id` goes into the card's loading example; `previous_card` (a path to another
    copy of the card, e.g. the one on the Hub) adds its changelog to the history; `quality_report` an
    `AuditReport` of the folder already computed (default: audited here). Returns the card's path.
    """
    root = Path(dataset_dir)
    if not card_configs(root):
        raise FileNotFoundError(f"no parquet shards under {root / 'data'}; nothing to describe")
    stats = collect_stats(root)
    try:
        render_figure(stats, root / FIGURE_PATH)
        figure: Optional[str] = FIGURE_PATH
    except ImportError as exc:  # matplotlib is a core dependency; a broken install still gets a card
        logging.getLogger(__name__).warning("no card figure (%s); pip install matplotlib", exc)
        figure = None
    from publishing.examples import example_dialogues

    examples = example_dialogues(root, write_images=True)
    if run_stats is not None:
        facts = dict(run_stats)
        if getattr(quality_report, "quarantined", None) is not None:  # what the Quality section counts from it
            facts[QUARANTINE_KEYS_FACT] = dict(quality_report.quarantined)
        write_run_facts(root, redact_fields(facts))
    run_stats = read_run_facts(root)  # as kept: a later render shows exactly these, in this order
    if quality_report is None and isinstance(run_stats.get(QUARANTINE_KEYS_FACT), dict):
        quarantined = run_stats[QUARANTINE_KEYS_FACT]
    else:
        quarantined = None
    text = render_card(root, version=version, changelog=changelog, run_stats=run_stats, repo_id=repo_id,
                       figure=figure, stats=stats, previous_card=previous_card, examples=examples,
                       quality=quality_section(root, quality_report, write_figure=True, quarantined=quarantined))
    _write_atomically(root / LICENSE_FILENAME, render_license_file(sources_present(stats)))
    out = root / CARD_FILENAME
    _write_atomically(out, text)
    return out


def _write_atomically(path: Path, text: str) -> None:
    from generation.atomic import write_atomic

    write_atomic(path, text)  # fsync'd, renamed, the folder fsync'd; no temp left on an error
