"""`mmat_config.yaml`: the resolved generation config, written beside the data and pushed with it.

A dataset version must say exactly how it was made: this file holds the config as the run resolved it
(defaults filled in, teacher overrides applied, paths as the run read them), the engine version, and
the SHA-256 of every prompt template the teacher sends, so a changed prompt is visible even when the
config is not. It never holds a secret: the config names the environment variable of the API key
(`teacher.api_key_env`), never the key; every value also goes through `generation.redact` (known keys,
key-shaped strings, URL credentials, secret-named fields), so a key pasted into `extra_body` or a
`base_url` with credentials is masked too.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from generation.atomic import write_atomic
from generation.config import PipelineConfig

CONFIG_FILENAME = "mmat_config.yaml"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def prompt_hashes() -> dict[str, str]:
    """`file name: sha256` of every prompt template (every file in `generation/prompts/`) and of the tool
    descriptions the rationale prompt offers the teacher."""
    from generation.teachers.prompts import PROMPTS, TOOL_DESCRIPTIONS

    hashes = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(PROMPTS.iterdir()) if path.is_file()}
    hashes["tool_descriptions"] = hashlib.sha256(
        json.dumps(TOOL_DESCRIPTIONS, sort_keys=True).encode("utf-8")).hexdigest()
    return hashes


def resolved_config(config: PipelineConfig) -> dict[str, Any]:
    """What `mmat_config.yaml` holds: the engine version, the prompt templates' hashes, the config."""
    from generation.redact import redact_fields
    from generation.schema import ENGINE_VERSION

    snapshot = redact_fields({
        "engine_version": ENGINE_VERSION,
        "prompt_templates_sha256": prompt_hashes(),
        "config": config.model_dump(mode="json"),
    })
    # The key's variable name is not a secret (redact_fields masks it for its name): keep it, so the file
    # says which variable to set.
    env_name = config.teacher.api_key_env
    if _ENV_NAME.match(env_name):
        snapshot["config"]["teacher"]["api_key_env"] = env_name
    return snapshot


def write_config_snapshot(config: PipelineConfig, dataset_dir: str | Path) -> Path:
    """Write `dataset_dir/mmat_config.yaml` (atomically) and return its path."""
    path = Path(dataset_dir) / CONFIG_FILENAME
    text = ("# How this dataset was generated: the resolved config of the last `mmat generate` run over this\n"
            "# folder (secrets removed). Regenerate with: mmat generate --config mmat_config.yaml (the `config:` part)\n"
            + yaml.safe_dump(resolved_config(config), sort_keys=False, allow_unicode=True, width=120))
    write_atomic(path, text)  # `generation.atomic`: fsync'd, renamed, no temp left on an error
    return path
