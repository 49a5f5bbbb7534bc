"""`mmat_config.yaml`: the run's resolved config beside the data, pushed with it, linked from the card,
loadable again, and free of secrets (a key planted in the environment and in the config appears in no
pushed file)."""
from __future__ import annotations

import pytest
import yaml

from generation.config import load_config
from generation.config_snapshot import CONFIG_FILENAME, prompt_hashes
from generation.teachers.prompts import PROMPTS
from publishing.push import push_dataset
from tests.runner_support import mmat, mmat_env, source, write_config

REPO_ID = "tester/mmat-1m"
ENV_KEY = "envPLANTEDsecret7f3a9c"        # no key shape: only "known secret" masking can catch it
CONFIG_KEY = "sk-proj-CONFIGplantedKEY0123456789"
NEEDLES = [ENV_KEY, CONFIG_KEY, "PLANTEDsecret", "CONFIGplantedKEY", "hunter2pass"]


@pytest.mark.slow
def test_the_resolved_config_is_pushed_beside_the_data_and_holds_no_secret(hub_server, tmp_path):
    from huggingface_hub import HfApi, snapshot_download

    teacher = {"kind": "offline", "api_key_env": "OPENAI_API_KEY",
               "extra_body": {"api_key": "plain-value-named-like-a-key", "user": ENV_KEY, "note": CONFIG_KEY},
               "base_url": "http://bob:hunter2pass@127.0.0.1:9/v1"}
    config = write_config(tmp_path / "cfg.yaml", [source("tabmwp")], teacher=teacher)
    out = tmp_path / "out"
    result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path,
                  env=mmat_env(OPENAI_API_KEY=ENV_KEY))
    assert result.returncode == 0, result.stderr

    snapshot = yaml.safe_load((out / CONFIG_FILENAME).read_text())
    assert snapshot["engine_version"]
    assert snapshot["prompt_templates_sha256"] == prompt_hashes()
    assert set(snapshot["prompt_templates_sha256"]) >= {p.name for p in PROMPTS.glob("*.j2")}
    assert snapshot["config"]["teacher"]["api_key_env"] == "OPENAI_API_KEY"  # the variable's name stays
    assert snapshot["config"]["teacher"]["extra_body"]["api_key"] == "***"
    assert snapshot["config"]["sources"][0]["kind"] == "tabmwp"
    # the file is a config again: `mmat generate --config mmat_config.yaml` regenerates the dataset
    again = load_config(out / CONFIG_FILENAME)
    assert again.sources[0].kind == "tabmwp" and again.rationale.max_steps == 5

    push_dataset(out, REPO_ID, "v1.0.0")
    files = HfApi().list_repo_files(REPO_ID, repo_type="dataset", revision="v1.0.0")
    assert CONFIG_FILENAME in files and "LICENSE.md" in files
    pushed = snapshot_download(REPO_ID, repo_type="dataset", revision="v1.0.0", local_dir=tmp_path / "pulled")
    card = (tmp_path / "pulled" / "README.md").read_text()
    assert f"]({CONFIG_FILENAME})" in card
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(tmp_path / "pulled" / "README.md").data.to_dict()["generation_config"] == CONFIG_FILENAME
    leaks = [f"{p.relative_to(pushed)}: {n}" for p in sorted((tmp_path / "pulled").rglob("*")) if p.is_file()
             for n in NEEDLES if n.encode() in p.read_bytes()]
    leaks += [f"stored on the hub {p.name}: {n}" for p in (tmp_path / "hub").rglob("*") if p.is_file()
              for n in NEEDLES if n.encode() in p.read_bytes()]
    assert leaks == []
