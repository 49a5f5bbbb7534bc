"""`mmat`: the command line (typer). Each command parses flags and calls one plain function.

Every command, including ones added later, runs inside `MmatGroup`, which makes a user's mistake one
red line and exit 2, never a stack trace: a bad flag or value (click's usage errors, with the command's
`--help` named), an error a user can fix (`generation.errors.MmatError`: a bad config key, a missing
backend, key or token), a missing file or permission. A bug still shows its (redacted) traceback and
exits 1. Boolean flags show in `--help` as `--dry-run`, not `--dry-run <bool>`. `--quiet` also
silences other libraries' warnings and progress bars (`generation.logs.quiet_third_party`).
"""
from __future__ import annotations

import errno
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from generation.errors import MmatError, did_you_mean

try:  # typer >= 0.2x vendors click; before, it used click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions
# How a command ends on purpose (typer.Exit, Ctrl-C): passed through as they are.
_ENDINGS = (typer.Exit, typer.Abort, getattr(click_exceptions, "Exit", typer.Exit),
            getattr(click_exceptions, "Abort", typer.Abort), SystemExit, KeyboardInterrupt)

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    from generation.redact import redact

    # escaped: messages name extras like `.[ray]`, which rich would otherwise read as markup and drop
    err_console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# What every command reports as one line (exit 2): an error the user can fix, a missing file or permission.
USER_ERRORS: tuple[type[BaseException], ...] = (MmatError, FileNotFoundError, PermissionError)


def _flags_without_metavar(params: list) -> list:
    """`--dry-run`, not `--dry-run <bool>`: a flag takes no value, so its help shows none."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class MmatGroup(TyperGroup):
    """The `mmat` group: every subcommand's user mistakes end as one line (see the module docstring)."""

    def get_params(self, ctx):  # the group's own --help
        return _flags_without_metavar(super().get_params(ctx))

    def get_command(self, ctx, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_without_metavar(command.get_params(ctx))
        return command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click_exceptions.NoArgsIsHelpError:
            raise
        except click_exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see `{where} --help`)")
        except click_exceptions.ClickException as exc:
            fail(exc.format_message())
        except _ENDINGS:
            raise
        except USER_ERRORS as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: show it, secrets redacted
            _unexpected(exc)


# No locals in tracebacks: they can hold API keys and tokens.
app = typer.Typer(cls=MmatGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="mmat-1m: turn image-QA pairs into multimodal agent-tuning data (RR/ORR) and train on it.")


def _unexpected(exc: BaseException, work_dir_hint: str = "") -> None:
    """A bug, not a user error: the traceback (secrets redacted) on stderr, exit 1."""
    import traceback

    from generation.redact import redact

    text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    sys.stderr.write(text)
    fail(f"unexpected {type(exc).__name__}: {redact(str(exc))}"
         + (f" (the run log in {work_dir_hint} has details)" if work_dir_hint else ""), 1)


class UsageProblem(MmatError):
    """A flag value that names nothing (a config, a split, a folder): one line with the closest match."""


def check_dataset_choice(dataset: str, config: str, split: str, *, local: Optional[bool] = None) -> None:
    """Before `datasets` gets them: `config` and `split` are mmat-1m's, and a local `dataset` is a folder.
    `local=None`: a path that does not exist and reads as NS/NAME is a Hub repo, anything else is local."""
    from mmat_1m import CONFIGS_BY_NAME, SPLITS

    if config not in CONFIGS_BY_NAME:
        raise UsageProblem(f"--config {config!r} is not a config of mmat-1m{did_you_mean(config, CONFIGS_BY_NAME)} "
                           f"(configs: {', '.join(CONFIGS_BY_NAME)})")
    if split not in SPLITS:
        raise UsageProblem(f"--split {split!r} is not a split of mmat-1m{did_you_mean(split, SPLITS)} "
                           f"(splits: {', '.join(SPLITS)})")
    path = Path(dataset).expanduser()
    if local is None:
        parts = dataset.split("/")
        local = path.exists() or len(parts) != 2 or not all(parts) or dataset.startswith((".", "~"))
    if local and not path.is_dir():
        raise UsageProblem(f"{dataset}: no such dataset folder; pass the folder `mmat generate --out` wrote, "
                           f"or a Hub repo NS/NAME")


def _interrupted() -> None:
    err_console.print("interrupted: finished samples are saved; rerun the same command to resume",
                      highlight=False)
    raise typer.Exit(130)


# A disk that fills up (or turns read-only) mid-run: the environment's problem, not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@contextmanager
def _run_failures_reported() -> Iterator[None]:
    """How `generate` and `retry` end when the run cannot finish: a user error (a bad config, an
    unwritable folder, a teacher that refuses the key or the quota) is one line (exit 2), a full disk
    one line (exit 1), Ctrl-C says how to resume (exit 130), a bug shows its redacted traceback (exit 1)."""
    try:
        yield
    except USER_ERRORS as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        _interrupted()
    except (typer.Exit, SystemExit):
        raise
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            _unexpected(exc, "the work folder")
        where = f" writing {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or 'disk error'}{where}: free some space (or make it writable), then rerun the same "
             f"command to resume; finished samples are kept", 1)
    except Exception as exc:  # noqa: BLE001 - a bug: show it, secrets redacted
        _unexpected(exc, "the work folder")


def _quiet(quiet: bool) -> None:
    """`--quiet`: no other library's warnings or bars either, from the first import on."""
    if quiet:
        from generation.logs import quiet_third_party

        quiet_third_party()


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


@app.command()
def generate(
    config: Path = typer.Option(..., "--config", "-c", help="pipeline YAML (see configs/)"),
    out: Path = typer.Option(Path("mmat-1m"), "--out", "-o", help="dataset folder to write"),
    teacher: Optional[str] = typer.Option(None, help="override teacher.kind: offline | openai | llamacpp"),
    model: Optional[str] = typer.Option(None, help="override teacher.model (with --teacher llamacpp: the GGUF file)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="override teacher.base_url (any OpenAI-compatible server)"),
    mmproj: Optional[str] = typer.Option(None, "--mmproj", help="with --teacher llamacpp: the vision projector GGUF"),
    num_shards: int = typer.Option(1, "--num-shards", min=1, help="split the work over N independent workers"),
    shard_index: int = typer.Option(0, "--shard-index", min=0, help="which of the N workers this is"),
    max_quarantine_rate: Optional[float] = typer.Option(None, "--max-quarantine-rate", min=0.0, max=1.0,
                                                        help="exit 3 when quarantined/attempted is above this"),
    limit: Optional[int] = typer.Option(None, help="process at most this many new samples"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, warnings only"),
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
    _quiet(quiet)
    with _run_failures_reported():
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
            from generation.ray_engine import run_generation_ray

            summary = run_generation_ray(cfg, options, address=ray_address)
        else:
            from generation.runner import run_generation

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
    teacher: Optional[str] = typer.Option(None, help="override teacher.kind: offline | openai | llamacpp"),
    model: Optional[str] = typer.Option(None, help="override teacher.model (with --teacher llamacpp: the GGUF file)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="override teacher.base_url"),
    mmproj: Optional[str] = typer.Option(None, "--mmproj", help="with --teacher llamacpp: the vision projector GGUF"),
    max_quarantine_rate: Optional[float] = typer.Option(None, "--max-quarantine-rate", min=0.0, max=1.0,
                                                        help="exit 3 when the quarantine rate stays above this"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, warnings only"),
) -> None:
    """Re-run only the quarantined samples of an earlier run (e.g. after fixing their inputs).

    Samples that now finish join the shards and leave quarantine.jsonl; the others get a fresh record."""
    from generation.plan import RunOptions
    from generation.runner import run_generation

    _quiet(quiet)
    with _run_failures_reported():
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
) -> None:
    """Print rows of a generated dataset, loaded the way users load it (`datasets.load_dataset`)."""
    import datasets

    check_dataset_choice(dataset, config, split)
    ds = datasets.load_dataset(dataset, config, split=split, streaming=True, revision=revision)
    for row in ds.take(n):
        row = dict(row)
        row["images"] = [f"<image {im.size[0]}x{im.size[1]}>" for im in row["images"]]
        console.print_json(json.dumps(row, ensure_ascii=False, default=str))


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

    try:
        report = audit_dataset(dataset, config, revision=revision)
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    print_report(report, console)
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
) -> None:
    """Upload the dataset folder to the Hub as a new tagged revision."""
    from publishing.push import push_dataset

    try:
        url = push_dataset(dataset, repo, tag, private=private, commit_message=message)
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

    console.print(f"trained {result.global_step} steps: loss {num(result.train_loss, 4)} "
                  f"(ce {num(result.final_loss_ce, 4)}, frobenius {num(result.final_loss_frob, 6)}); "
                  f"{result.tokens_per_second:,.0f} tokens/s; adapter in {result.output_dir}", highlight=False)


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
    from trainer.export import export as run_export

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


# ---- mmat agent / mmat eval: run a model tuned on the rows, and measure it (agent/) ----------------------
def _agent_logging(quiet: bool) -> None:
    """Console log lines on stderr (stdout carries the trajectory, or JSON with --json)."""
    import logging

    from rich.logging import RichHandler

    from generation.logs import setup_console_logging

    setup_console_logging(quiet)
    for handler in logging.getLogger("mmat").handlers:
        if isinstance(handler, RichHandler):
            handler.console = err_console


def _endpoint_spec(endpoint: Optional[str], model: Optional[str], gguf: Optional[Path], model_path: Optional[Path],
                   base_model: Optional[str], api_key_env: str, vision: str, max_tokens: int, temperature: float,
                   extra_body: Optional[str], threads: Optional[int], n_ctx: int, parallel: int = 1):
    from agent import AgentError, EndpointSpec, SamplingSettings

    if vision not in ("auto", "on", "off"):
        raise AgentError(f"--vision must be auto, on or off, not {vision!r}")
    try:
        body = json.loads(extra_body) if extra_body else {}
    except json.JSONDecodeError as exc:
        raise AgentError(f"--extra-body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AgentError("--extra-body must be a JSON object, e.g. '{\"repeat_penalty\": 1.15}'")
    return EndpointSpec(endpoint=endpoint, model=model, gguf=str(gguf) if gguf else None,
                        model_path=str(model_path) if model_path else None, base_model=base_model,
                        api_key_env=api_key_env, vision={"auto": None, "on": True, "off": False}[vision],
                        sampling=SamplingSettings(max_tokens=max_tokens, temperature=temperature, extra_body=body),
                        threads=threads, n_ctx=n_ctx, parallel=parallel)


# The options `mmat agent` and `mmat eval` share: where the model runs and how it is asked.
EndpointOpt = Annotated[Optional[str], typer.Option(
    "--endpoint", help="a running OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM, llama.cpp, SGLang)")]
ModelNameOpt = Annotated[Optional[str], typer.Option(
    "--model", help="the served model's name (default: the first one the endpoint lists)")]
GgufOpt = Annotated[Optional[Path], typer.Option(
    "--gguf", help="serve this GGUF here with llama.cpp (the local teacher's launcher) instead of --endpoint")]
ModelPathOpt = Annotated[Optional[Path], typer.Option(
    "--model-path", help="a local transformers model, or the LoRA folder `mmat train` wrote, instead of --endpoint")]
BaseModelOpt = Annotated[Optional[str], typer.Option("--base-model", help="with --model-path: the LoRA's base model")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", min=1, help="rr: steps before the summary question")]
OperatorsConfigOpt = Annotated[Optional[Path], typer.Option(
    "--operators-config", help="a pipeline YAML whose operators: section picks the backends (as in generation)")]
ApiKeyEnvOpt = Annotated[str, typer.Option("--api-key-env", help="the environment variable that holds the key")]
VisionOpt = Annotated[str, typer.Option("--vision", help="send the images: auto (ask the server) | on | off")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="the longest reply")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0)]
ExtraBodyOpt = Annotated[Optional[str], typer.Option("--extra-body", help="extra request fields as JSON")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="with --gguf: CPU threads")]
NCtxOpt = Annotated[int, typer.Option("--n-ctx", min=64, help="with --gguf: context per request")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="warnings only")]
_CACHE_HELP = "operator-cache folder (pass a generation run's <work>/operator-cache to reuse its results)"


@app.command("agent")
def agent_command(
    image: list[Path] = typer.Option(..., "--image", help="an image file (repeat for several)"),
    question: str = typer.Option(..., "--question", help="the question, with its response-style constraint if any"),
    endpoint: EndpointOpt = None, model: ModelNameOpt = None, gguf: GgufOpt = None, model_path: ModelPathOpt = None,
    base_model: BaseModelOpt = None,
    format: str = typer.Option("rr", "--format", help="rr (multi-turn) | orr (one turn) | plain (no tools)"),
    max_steps: MaxStepsOpt = 8,
    operators: Optional[str] = typer.Option(None, "--operators", help="orr: operators to run first, comma "
                                            "separated (default: every non-RAG operator available)"),
    operators_config: OperatorsConfigOpt = None,
    cache_dir: Path = typer.Option(Path(".mmat-agent/operator-cache"), "--cache-dir", help=_CACHE_HELP),
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY", vision: VisionOpt = "auto", max_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = 0.0, extra_body: ExtraBodyOpt = None, threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = 4096,
    json_out: bool = typer.Option(False, "--json", help="print the trajectory as JSON"),
    quiet: QuietOpt = False,
) -> None:
    """Answer one question with a tuned model as an agent: it reasons in RR steps (or one ORR turn), the
    operators and RAG run on the image as in generation, and the whole trajectory is printed.

    Exit codes: 0 answered; 2 a usage error or an endpoint that cannot be used; 3 no answer (the model's
    replies did not parse, or the question could not run)."""
    from agent import Agent, AgentSettings
    from agent.render import print_trajectory
    from agent.trajectory import ANSWERED, MAX_STEPS

    _agent_logging(quiet or json_out)
    try:
        for path in image:  # a path typed wrong is a usage error, not an answer with status `error`
            if not path.is_file():
                raise FileNotFoundError(f"--image {str(path)!r}: no such file")
        spec = _endpoint_spec(endpoint, model, gguf, model_path, base_model, api_key_env, vision, max_tokens,
                              temperature, extra_body, threads, n_ctx)
        settings = AgentSettings(format=format, max_steps=max_steps, orr_operators=[
            name.strip() for name in operators.split(",") if name.strip()] if operators else None)
        with Agent.from_spec(spec, settings, operators_config=operators_config, cache_dir=cache_dir) as runner:
            result = runner.run_sync(image, question)
    except USER_ERRORS as exc:  # AgentError and LlamaCppError are MmatErrors
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print_trajectory(result, console)
    if result.status not in (ANSWERED, MAX_STEPS):
        raise typer.Exit(3)


@app.command("eval")
def eval_command(
    dataset: str = typer.Option(..., "--dataset", help="dataset folder, Hub repo id, or a .jsonl/.parquet/.csv file"),
    config: Optional[str] = typer.Option(None, "--config", help="dataset config, e.g. orr or rr (ours: any; "
                                         "the question, answer and images columns are the same)"),
    split: str = typer.Option("validation", "--split"),
    revision: Optional[str] = typer.Option(None, "--revision"),
    endpoint: EndpointOpt = None, model: ModelNameOpt = None, gguf: GgufOpt = None, model_path: ModelPathOpt = None,
    base_model: BaseModelOpt = None,
    format: str = typer.Option("all", "--format", help="rr | orr | plain | a comma list | all (plain, orr, rr: "
                               "prints the latency ratios against plain)"),
    max_steps: MaxStepsOpt = 8,
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="questions in flight at once"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="the first N rows only"),
    image_column: str = typer.Option("images", "--image-column"),
    question_column: str = typer.Option("question", "--question-column"),
    answer_column: str = typer.Option("answer", "--answer-column"),
    id_column: str = typer.Option("id", "--id-column", help="(the row index when the column is absent)"),
    source_column: str = typer.Option("source", "--source-column", help="accuracy is reported per source"),
    choices_column: Optional[str] = typer.Option(None, "--choices-column", help="options of multiple-choice rows"),
    aliases_column: Optional[str] = typer.Option(None, "--aliases-column", help="accepted answers (InfoSeek "
                                                 "answer_eval form: strings and numeric ranges)"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="answers and operator cache (default: "
                                            ".mmat-eval/<dataset>-<config>-<split>); a rerun resumes"),
    operators_config: OperatorsConfigOpt = None,
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=_CACHE_HELP + "; default: in --work-dir"),
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY", vision: VisionOpt = "auto", max_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = 0.0, extra_body: ExtraBodyOpt = None, threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = 4096,
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    quiet: QuietOpt = False,
) -> None:
    """Run the agent over a dataset's questions and score the answers with the project's verifier:
    accuracy (overall and per source), tool calls, turns, tokens and latency per question, and with
    --format all the latency of ORR and RR against the plain baseline. Answers are saved as they come
    (work folder): rerun the same command after a crash or Ctrl-C to finish."""
    import asyncio

    from agent import Agent, AgentSettings
    from agent.eval_data import Columns, load_eval_set
    from agent.eval_store import AnswerStore
    from agent.evaluate import default_work_dir, evaluate, parse_formats
    from agent.render import print_report

    _agent_logging(quiet or json_out)
    try:
        formats = parse_formats(format)
        columns = Columns(image=image_column, question=question_column, answer=answer_column, id=id_column,
                          source=source_column, choices=choices_column, aliases=aliases_column)
        evalset = load_eval_set(dataset, config, split, revision, columns, limit)
        work = work_dir or default_work_dir(dataset, config, split)
        spec = _endpoint_spec(endpoint, model, gguf, model_path, base_model, api_key_env, vision, max_tokens,
                              temperature, extra_body, threads, n_ctx, parallel=min(concurrency, 4))
        with AnswerStore(work) as store:
            agent = Agent.from_spec(spec, AgentSettings(format=formats[0], max_steps=max_steps),
                                    operators_config=operators_config, cache_dir=cache_dir or work / "operator-cache")

            async def go():
                async with agent:
                    return await evaluate(agent, evalset, store, formats, concurrency)

            report = asyncio.run(go())
            (work / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except USER_ERRORS as exc:  # AgentError and LlamaCppError are MmatErrors
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted: answers so far are saved; rerun the same command to finish", highlight=False)
        raise typer.Exit(130)
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        print_report(report, console)
        console.print(f"answers: {store.path}", highlight=False, markup=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
