"""Issue 16's CLI: every subcommand's user mistakes are one line and exit 2 (no traceback), unknown config
keys get a suggestion, YAML errors name line and column, flags show no `<bool>` in help, and `--quiet`
silences other libraries' warnings and progress bars."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.dataset_factory import make_dataset_folder
from tests.runner_support import REPO, mmat, mmat_env, source, write_config


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_dataset_folder(tmp_path_factory.mktemp("cli"), n_rows_per_source=1, sources=["tabmwp"], card=True)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-configs")
    good = write_config(root / "good.yaml", [source("tabmwp", limit=1)])
    typo = root / "typo.yaml"
    typo.write_text(good.read_text().replace("max_steps:", "max_stepz:"))
    broken = root / "broken.yaml"
    broken.write_text("sources:\n  - {kind: tabmwp, path: x\nteacher: {kind: offline}\n")
    return {"good": good, "typo": typo, "broken": broken}


def _cases(folder: Path, configs: dict[str, Path], tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, a piece of the one-line message) for each subcommand's typical mistakes."""
    missing = str(tmp / "no-such-folder")
    ds = str(folder)
    return [
        (["generate", "--config", str(tmp / "nope.yaml")], "no such config file"),
        (["generate", "--config", str(configs["good"]), "--limit", "abc"], "Invalid value for '--limit'"),
        (["generate", "--config", str(configs["typo"]), "--dry-run"], "did you mean 'max_steps'?"),
        (["generate", "--config", str(configs["broken"]), "--dry-run"], "not valid YAML at line 3, column 8"),
        (["generate", "--config", str(configs["good"]), "--engine", "spark"], "--engine must be local or ray"),
        (["retry", "--config", str(tmp / "nope.yaml")], "no such config file"),
        (["show", ds, "--config", "orrr"], "did you mean 'orr'?"),
        (["show", ds, "--split", "tran"], "did you mean 'train'?"),
        (["show", missing], "no such dataset folder"),
        (["show", ds, "--n", "0"], "Invalid value for '--n'"),
        (["view", missing, "--export", str(tmp / "static")], "no-such-folder"),
        (["view", ds, "--config", "xyz", "--export", str(tmp / "static")], "--config must be one of"),
        (["card", missing], "no-such-folder"),
        (["push", missing, "--repo", "me/x", "--tag", "v1.0.0"], "is not a folder"),
        (["train", "--data", missing], "no such dataset folder"),
        (["train", "--data", ds, "--config", "orrr"], "did you mean 'orr'?"),
        (["export", missing, "--format", "swift", "--out", str(tmp / "x.jsonl")], "no such dataset folder"),
        (["export", ds, "--format", "axolotl", "--out", str(tmp / "x.jsonl")], "unknown export format"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ]


def test_every_subcommand_reports_a_user_mistake_in_one_line_with_exit_2(folder, configs, tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app

    failures = []
    for args, expected in _cases(folder, configs, tmp_path):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "100", "HF_HUB_OFFLINE": "1"})
        lines = result.output.strip().splitlines()
        if (result.exit_code != 2 or len(lines) != 1 or "Traceback" in result.output
                or not lines[0].startswith("error: ") or expected not in lines[0]):
            failures.append(f"{' '.join(args[:3])}: exit {result.exit_code}, {len(lines)} lines: {result.output[-300:]!r}")
    assert failures == []


def test_the_issue_cases_print_one_line_in_a_real_process(folder, tmp_path):
    """`mmat show --config orrr` (57 traceback lines before) and `show`/`card` on a missing folder (45/23)."""
    for args in (["show", folder, "--config", "orrr"], ["show", tmp_path / "gone"], ["card", tmp_path / "gone"]):
        result = mmat(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_flags_show_no_value_in_help():
    from typer.testing import CliRunner

    from mmat_cli import app

    for command in ["generate", "retry", "show", "view", "card", "push", "train", "export", None]:
        result = CliRunner().invoke(app, ([command] if command else []) + ["--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, command
    generate = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert "--dry-run" in generate and "--quiet" in generate


@pytest.mark.slow
def test_quiet_silences_other_libraries_warnings_and_progress_bars(tmp_path):
    """RapidOCR's warnings, Python warnings, a library logger's warning and transformers' "Loading weights"
    bar (a real from_pretrained of a tiny Grounding DINO) print nothing after `quiet_third_party`; an error
    and mmat's own warnings still do."""
    code = textwrap.dedent(f"""
        import logging, warnings
        from generation.logs import quiet_third_party, setup_console_logging
        setup_console_logging(quiet=True)    # what `mmat generate --quiet` does
        import rapidocr                      # its logger has its own handler, at INFO
        logging.getLogger("RapidOCR").warning("planted rapidocr warning")
        warnings.warn("planted python warning")
        logging.getLogger("transformers.modeling_utils").warning("planted transformers warning")
        logging.getLogger("some.library").warning("planted library warning")
        from tests.tiny_grounding_dino import build_tiny_grounding_dino
        from transformers import GroundingDinoForObjectDetection
        GroundingDinoForObjectDetection.from_pretrained(build_tiny_grounding_dino(__import__("pathlib").Path({str(tmp_path / "dino")!r})))
        logging.getLogger("some.library").error("an error still shows")
        logging.getLogger("mmat.runner").warning("mmat warning still shows")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=mmat_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "planted" not in output and "Loading weights" not in output and "it/s" not in output, output
    assert "an error still shows" in output and "mmat warning still shows" in output
