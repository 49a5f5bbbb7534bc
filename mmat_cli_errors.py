"""How every `mmat` command ends when it cannot do its job: one line and exit 2 for a user's mistake.

`MmatGroup` is the click group `mmat_cli.app` runs in: a bad flag or value (click's usage errors, with
the command's `--help` named), an error a user can fix (`generation.errors.MmatError`: a bad config key,
a missing backend, key or token), a missing file or permission each become one red line on stderr and
exit 2; a bug still shows its traceback (secrets redacted) and exits 1. `generate`/`retry` add the
run's own endings (`run_failures_reported`: a full disk, Ctrl-C). Kept apart from the commands so that
command modules (`mmat_cli`, `mmat_cli_agent`) share one definition of it.
"""
from __future__ import annotations

import errno
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
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


def interrupted() -> None:
    err_console.print("interrupted: finished samples are saved; rerun the same command to resume",
                      highlight=False)
    raise typer.Exit(130)


# A disk that fills up (or turns read-only) mid-run: the environment's problem, not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@contextmanager
def run_failures_reported() -> Iterator[None]:
    """How `generate` and `retry` end when the run cannot finish: a user error (a bad config, an
    unwritable folder, a teacher that refuses the key or the quota) is one line (exit 2), a full disk
    one line (exit 1), Ctrl-C says how to resume (exit 130), a bug shows its redacted traceback (exit 1)."""
    try:
        yield
    except USER_ERRORS as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted()
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


def quiet_mode(quiet: bool) -> None:
    """`--quiet`: no other library's warnings or bars either, from the first import on."""
    if quiet:
        from generation.logs import quiet_third_party

        quiet_third_party()
