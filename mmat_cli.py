"""`mmat`: the command line (typer). Each command parses flags and calls one plain function.

Every command, including ones added later, runs inside `mmat_cli_errors.MmatGroup`, which makes a
user's mistake one red line and exit 2, never a stack trace; a bug still shows its (redacted) traceback
and exits 1. `mmat agent` and `mmat eval` live in `mmat_cli_agent`. Boolean flags show in `--help` as `--dry-run`, not `--dry-run <bool>`. `--quiet` also
silences other libraries' warnings and progress bars (`generation.logs.quiet_third_party`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mmat_cli_agent import agent_command, eval_command
from mmat_cli_errors import (
    USER_ERRORS, MmatGroup, check_dataset_choice, console, fail, quiet_mode,
    run_failures_reported,
)

# No locals in tracebacks: they can hold API keys and tokens.
app = typer.Typer(cls=MmatGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="mmat-1m: turn image-QA pairs into multimodal agent-tuning data (RR/ORR) and train on it.")


def _load_pipeline(config: Path, teacher: Optional[str], model: Optional[str], base_url: Optional[str],
                   mmproj: Optional[str] = None):
    from generation.config import load_config
    from generation.teachers.factory import apply_teacher_overrides

    cfg = load_config(config)
    cfg.teacher = apply_teacher_overrides(cfg.teacher, teacher=teacher, model=model, base_url=base_url,
                                          mmproj=mmproj)
    return cfg


def _print_summary(summary, cfg) -> None:
    from generation.teachers.prices import teacher_prices

    table = Table(title=f"dataset: {summary.out_dir}")
    table.add_column("config/split")
    table.add_column("rows", justify="right")
    for key, count in sorted(summary.rows.items()):
        table.add_row(key, str(count))
    console.print(table)
    usage = summary.usage
    cost = f"${usage.cost_usd:.4f}" if teacher_prices(cfg.teacher) is not None else "cost unknown (set teacher.prices)"
    console.print(
        f"samples: {summary.finished} finished, {summary.quarantined} quarantined, {summary.skipped} done before "
        f"(of {summary.total}); teacher {usage.model}: {usage.prompt_tokens + usage.completion_tokens:,} tokens, "
        f"{cost}; operator executions: {summary.operator_executions}; {summary.elapsed_s:.1f} s",
        highlight=False,
    )
    if summary.quarantine_by_stage:
        q = Table(title="quarantined this run (details: quarantine.jsonl in the work folder)")
        q.add_column("stage")
        q.add_column("samples", justify="right")
        for stage, count in summary.quarantine_by_stage.most_common():
            q.add_row(stage, str(count))
        console.print(q)
    if summary.quarantined_total:
        attempted = summary.finished_total + summary.quarantined_total
        console.print(f"quarantined in all: {summary.quarantined_total} of {attempted} "
                      f"({summary.quarantine_rate:.1%}); `mmat retry` re-runs them", highlight=False)
    console.print(f"work folder (checkpoints, quarantine, log): {summary.work_dir}", highlight=False, markup=False)


# The teacher overrides and the quiet flag `generate` and `retry` share: one definition each.
TeacherOpt = Annotated[Optional[str], typer.Option(help="override teacher.kind: offline | openai | llamacpp")]
ModelOpt = Annotated[Optional[str], typer.Option(
    help="override teacher.model (with --teacher llamacpp: the GGUF file)")]
MmprojOpt = Annotated[Optional[str], typer.Option(
    "--mmproj", help="with --teacher llamacpp: the vision projector GGUF")]
RunQuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, warnings only")]


@app.command()
def generate(
    config: Path = typer.Option(..., "--config", "-c", help="pipeline YAML (see configs/)"),
    out: Path = typer.Option(Path("mmat-1m"), "--out", "-o", help="dataset folder to write"),
    teacher: TeacherOpt = None,
    model: ModelOpt = None,
    base_url: Optional[str] = typer.Option(None, "--base-url", help="override teacher.base_url (any OpenAI-compatible server)"),
    mmproj: MmprojOpt = None,
    num_shards: int = typer.Option(1, "--num-shards", min=1, help="split the work over N independent workers"),
    shard_index: int = typer.Option(0, "--shard-index", min=0, help="which of the N workers this is"),
    max_quarantine_rate: Optional[float] = typer.Option(None, "--max-quarantine-rate", min=0.0, max=1.0,
                                                        help="exit 3 when quarantined/attempted is above this"),
    limit: Optional[int] = typer.Option(None, help="process at most this many new samples"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and exit"),
    quiet: RunQuietOpt = False,
    engine: str = typer.Option("local", help="local | ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="auto | ray://host:10001"),
) -> None:
    """Run the four stages over the configured sources and write the dataset folder.

    Resumable: rerun the same command after a crash or Ctrl-C and only unfinished samples run.
    Exit codes: 0 done; 1 a full disk or a bug; 2 a usage/config error, an unwritable folder, or a
    teacher that rejects the key or has no quota left; 3 every sample failed, or the quarantine rate
    is above the maximum; 130 interrupted."""
    from generation.plan import RunOptions

    if shard_index >= num_shards:
        fail(f"--shard-index must be below --num-shards ({num_shards})")
    if limit is not None and limit < 0:
        fail(f"--limit must be 0 or more, not {limit}")
    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, not {engine!r}")
    quiet_mode(quiet)
    with run_failures_reported():
        if engine == "ray" and not dry_run:
            from generation.ray_engine import require_ray

            require_ray()  # a missing engine is the first thing to fix, whatever the config says
        cfg = _load_pipeline(config, teacher, model, base_url, mmproj)
        options = RunOptions(out_dir=out, num_shards=num_shards, shard_index=shard_index, quiet=quiet,
                             max_quarantine_rate=max_quarantine_rate, limit=limit)
        if dry_run:
            from generation.plan import describe_plan
            from generation.redact import redact

            console.print(redact(describe_plan(cfg, options)), highlight=False, soft_wrap=True, markup=False)
            return
        if engine == "ray":
            from publishing.run import run_generation_ray

            summary = run_generation_ray(cfg, options, address=ray_address)
        else:
            from publishing.run import run_generation

            summary = run_generation(cfg, options)
    _finish(summary, quiet, cfg)


def _finish(summary, quiet: bool, cfg) -> None:
    if not quiet:
        _print_summary(summary, cfg)
    if summary.exit_code:
        fail(summary.exit_message, summary.exit_code)


@app.command()
def retry(
    config: Path = typer.Option(..., "--config", "-c", help="the pipeline YAML of the earlier run"),
    out: Path = typer.Option(Path("mmat-1m"), "--out", "-o", help="the dataset folder of the earlier run"),
    teacher: TeacherOpt = None,
    model: ModelOpt = None,
    base_url: Optional[str] = typer.Option(None, "--base-url", help="override teacher.base_url"),
    mmproj: MmprojOpt = None,
    max_quarantine_rate: Optional[float] = typer.Option(None, "--max-quarantine-rate", min=0.0, max=1.0,
                                                        help="exit 3 when the quarantine rate stays above this"),
    quiet: RunQuietOpt = False,
) -> None:
    """Re-run only the quarantined samples of an earlier run (e.g. after fixing their inputs).

    Samples that now finish join the shards and leave quarantine.jsonl; the others get a fresh record."""
    from generation.plan import RunOptions
    from publishing.run import run_generation

    quiet_mode(quiet)
    with run_failures_reported():
        cfg = _load_pipeline(config, teacher, model, base_url, mmproj)
        summary = run_generation(cfg, RunOptions(out_dir=out, quiet=quiet, retry=True,
                                                 max_quarantine_rate=max_quarantine_rate))
    if summary.total == 0:
        console.print("nothing to retry: no quarantined samples", highlight=False)
    _finish(summary, quiet, cfg)


@app.command()
def show(
    dataset: str = typer.Argument("mmat-1m", help="dataset folder or Hub repo id"),
    config: str = typer.Option("orr", "--config", help="config name, e.g. orr, rr, orr-tabmwp"),
    split: str = typer.Option("train", help="train | validation"),
    n: int = typer.Option(1, min=1, help="rows to print"),
    revision: Optional[str] = typer.Option(None),
    pretty: bool = typer.Option(False, "--pretty", help="indented, coloured JSON for reading (not JSON Lines)"),
) -> None:
    """Print rows of a generated dataset, loaded the way users load it (`datasets.load_dataset`).

    One JSON document per line (JSON Lines: `jq -c`, `json.loads` per line); `--pretty` for reading."""
    import datasets

    check_dataset_choice(dataset, config, split)
    if Path(dataset).is_dir():  # a bad shard is named, not a datasets traceback (issue 30)
        from viewer.shard import folder_problems

        problems = folder_problems(Path(dataset))
        if problems:
            fail(f"{problems[0]}; `datasets` cannot load the folder with it: remove the file or rerun `mmat generate`")
    ds = datasets.load_dataset(dataset, config, split=split, streaming=True, revision=revision)
    for row in ds.take(n):
        row = dict(row)
        row["images"] = [f"<image {im.size[0]}x{im.size[1]}>" for im in row["images"]]
        text = json.dumps(row, ensure_ascii=False, default=str)
        if pretty:
            console.print_json(text)
        else:
            sys.stdout.write(text + "\n")
    sys.stdout.flush()


@app.command()
def audit(
    dataset: str = typer.Argument("mmat-1m", help="dataset folder or Hub repo id (NS/NAME)"),
    config: str = typer.Option("rr", "--config", help="rr | orr (or a per-source config such as rr-tabmwp)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="also write the whole report as JSON here"),
    revision: Optional[str] = typer.Option(None, "--revision", help="a tag or branch of a Hub repo"),
) -> None:
    """Measure data quality: verified, grounded and leaked rates, reflections, operators, lengths and
    duplicates per source and subset, with example ids of each failing kind (generation/quality)."""
    from generation.quality.audit import audit_dataset, write_json
    from generation.quality.report import print_report
    from viewer.store import ShardStore, ViewerError

    try:
        store = ShardStore.open(dataset, revision=revision)  # a folder or a Hub repo: the audit reads either
        report = audit_dataset(dataset, config, store=store)
    except ViewerError as exc:
        fail(str(exc))
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    print_report(report, console, revision=revision)
    if json_path is not None:
        console.print(f"report: {write_json(report, json_path)}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def view(
    dataset: str = typer.Argument("mmat-1m", help="dataset folder or Hub repo id (NS/NAME)"),
    config: str = typer.Option("rr", "--config", help="rr | orr (or a per-source config such as orr-tabmwp)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="0: any free port"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    revision: Optional[str] = typer.Option(None, "--revision", help="a tag or branch of a Hub repo"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="the run's work folder (quarantine, operator "
                                            "backends); default: the one `mmat generate` used for the folder"),
    export: Optional[Path] = typer.Option(None, "--export", help="write the browser as static files to this folder "
                                          "(opens from disk, no server) instead of serving it"),
    limit: int = typer.Option(200, "--limit", min=1, help="with --export: at most this many dialogues, spread over the sources"),
    open_browser: Optional[bool] = typer.Option(None, "--open/--no-open", help="open the page in a browser "
                                                "(default: when run in a terminal with a display)"),
    stop_after: Optional[float] = typer.Option(None, "--stop-after", hidden=True, help="stop serving after N seconds"),
) -> None:
    """Browse dialogues in a web page: filters, images, labelled reasoning steps, operator results, RR beside ORR."""
    from viewer.app import ViewerApp

    try:
        viewer_app = ViewerApp.open(dataset, config=config, revision=revision, work_dir=work_dir)
        if export is not None:
            from viewer.export import export_static

            result = export_static(viewer_app, export, limit=limit)
            console.print(f"exported {result.dialogues} dialogues ({result.images} images) to {result.folder}; "
                          f"open {result.index}", highlight=False, markup=False, soft_wrap=True)
            return
        from viewer.server import ViewerServer

        try:
            server = ViewerServer(viewer_app, host, port)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass --port 0 for any free port")
    except (FileExistsError, *USER_ERRORS) as exc:
        fail(str(exc))
    console.print(f"mmat view: {server.url} ({viewer_app.store.name}, {config}); Ctrl-C to stop",
                  highlight=False, markup=False, soft_wrap=True)
    sys.stdout.flush()
    if open_browser is None:
        import os

        open_browser = sys.stdout.isatty() and (sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY")))
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve(stop_after=stop_after)
    except KeyboardInterrupt:
        pass


@app.command()
def card(
    dataset: str = typer.Argument(..., help="dataset folder or Hub repo id (NS/NAME)"),
    revision: Optional[str] = typer.Option(None, help="a tag or branch of a Hub repo"),
    write: bool = typer.Option(False, "--write", help="re-render README.md of a local folder from its shards"),
) -> None:
    """Show a dataset card in the terminal (a local folder or a pushed revision)."""
    from publishing.card import render_card_terminal, write_card
    from publishing.push import show_card

    try:
        if write:
            write_card(Path(dataset))
        render_card_terminal(show_card(dataset, revision=revision))
    except USER_ERRORS as exc:
        fail(str(exc))


@app.command()
def push(
    dataset: Path = typer.Argument(Path("mmat-1m"), help="dataset folder written by `mmat generate`"),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repo, NS/NAME"),
    tag: str = typer.Option(..., "--tag", help="version tag, e.g. v1.0.0 (must not exist yet)"),
    private: bool = typer.Option(False, "--private"),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="commit message / changelog line"),
    lock_timeout: float = typer.Option(600.0, "--lock-timeout", help="seconds to wait for a running `mmat generate` of the folder to finish"),
) -> None:
    """Upload the dataset folder to the Hub as a new tagged revision (after any running generation of it ends)."""
    from publishing.push import push_dataset

    try:
        url = push_dataset(dataset, repo, tag, private=private, commit_message=message, lock_timeout_s=lock_timeout)
    except USER_ERRORS as exc:
        fail(str(exc))
    from generation.redact import redact

    console.print(redact(f"pushed {repo} {tag}: {url}"), highlight=False, markup=False)


@app.command()
def train(
    config: Optional[str] = typer.Option(None, "--config", help="a training YAML (configs/train_orr.yaml) or a dataset config name (orr, rr, orr-tabmwp)"),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub dataset repo NS/NAME to stream from"),
    data: Optional[str] = typer.Option(None, "--data", help="local dataset folder instead of --repo"),
    revision: Optional[str] = typer.Option(None, "--revision", help="dataset tag or branch, e.g. v1.0.0"),
    model: Optional[str] = typer.Option(None, "--model", help="Hub id or local save_pretrained folder of a VLM"),
    output: Optional[str] = typer.Option(None, "--output", help="where checkpoints and the adapter go"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    frobenius_lambda: Optional[float] = typer.Option(None, "--frobenius-lambda", help="weight of the Frobenius term"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r"),
    lora_alpha: Optional[float] = typer.Option(None, "--lora-alpha"),
    resume_from_checkpoint: Optional[str] = typer.Option(None, "--resume-from-checkpoint", help="a checkpoint folder, or 'latest'"),
) -> None:
    """LoRA SFT with the Frobenius-regularised update, streaming rows from the Hub or a folder."""
    from trainer import load_train_config, resolve_config_flag

    yaml_path, dataset_config = resolve_config_flag(config)
    try:
        cfg = load_train_config(yaml_path, repo=repo, data=data, dataset_config=dataset_config, revision=revision,
                                model=model, output=output, max_steps=max_steps, frobenius_lambda=frobenius_lambda,
                                learning_rate=learning_rate, lora_r=lora_r, lora_alpha=lora_alpha,
                                resume_from_checkpoint=resume_from_checkpoint)
        check_dataset_choice(cfg.dataset_source, cfg.dataset_config, cfg.split, local=cfg.is_local)
        from trainer.lora import train as run_training

        result = run_training(cfg)
    except USER_ERRORS as exc:
        fail(str(exc))
    def num(value: Optional[float], digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    # Two numbers that each add up: the run's mean loss, and the last logged step's loss split into its
    # cross-entropy and λ-weighted Frobenius terms (loss = ce + frobenius on that step).
    console.print(f"trained {result.global_step} steps: mean loss {num(result.train_loss, 4)}; last logged step: "
                  f"loss {num(result.final_loss, 4)} = ce {num(result.final_loss_ce, 4)} + frobenius "
                  f"{'n/a' if result.final_loss_frob is None else format(result.final_loss_frob, '.3g')}; "
                  f"{result.tokens_per_second:,.0f} tokens/s; "
                  f"adapter in {result.output_dir}", highlight=False, soft_wrap=True)


@app.command()
def export(
    dataset: str = typer.Argument("mmat-1m", help="dataset folder or Hub repo id"),
    format: str = typer.Option(..., "--format", help="swift (ms-swift) | sharegpt (LLaMA-Factory)"),
    out: Path = typer.Option(..., "--out", "-o", help="jsonl file to write (images go beside it)"),
    config: str = typer.Option("orr", "--config"),
    split: str = typer.Option("train", "--split"),
    revision: Optional[str] = typer.Option(None, "--revision"),
    images_dir: Optional[Path] = typer.Option(
        None, "--images-dir", help="where image files are written (default: <out stem>_images/ beside the jsonl)"),
    relative_paths: bool = typer.Option(
        False, "--relative-paths",
        help="image paths relative to the jsonl's folder, every image under it (linked or copied from "
             "--images-dir): the folder moves between machines as one"),
) -> None:
    """Write rows as jsonl with `<image>` placeholders and image paths, for ms-swift or LLaMA-Factory."""
    from trainer.exporting import export as run_export

    try:
        check_dataset_choice(dataset, config, split)
        result = run_export(dataset, format, out, config=config, split=split, revision=revision,
                            images_dir=images_dir, relative_paths=relative_paths)
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    console.print(f"exported {result.rows} rows and {result.images} images as {result.format} to {result.out_path}"
                  + (f" (images linked beside it from {result.images_store})" if result.images_store else "")
                  + (f" ({result.skipped} rows skipped: a literal <image> in their text, or turns that do not"
                     " alternate; see the warnings)" if result.skipped else ""),
                  highlight=False)


def _version(value: bool) -> None:
    if value:
        from generation.schema import ENGINE_VERSION

        sys.stdout.write(f"mmat {ENGINE_VERSION}\n")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the engine version and exit")) -> None:
    """mmat-1m: turn image-QA pairs into multimodal agent-tuning data (RR/ORR) and train on it."""


app.command("agent")(agent_command)
app.command("eval")(eval_command)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
