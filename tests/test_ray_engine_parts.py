"""Parts of the Ray engine that need no Ray instance: config layout, limit splitting, operator routing,
and the one-line error when Ray is missing."""
from __future__ import annotations

import sys

import pytest

from generation.config import ConfigError, PipelineConfig, load_config
from generation.ray_engine import RayEngineError, _import_ray
from generation.sample_worker import PooledOperators, only_operators, per_worker_config
from operators.base import OperatorResult
from operators.config import OperatorsConfig


def _config(**teacher) -> PipelineConfig:
    return PipelineConfig.model_validate({"sources": [{"kind": "tabmwp", "path": "samples/tabmwp"}],
                                          "teacher": {"kind": "openai", **teacher}})


def test_each_generation_actor_gets_its_share_of_the_teacher_limits():
    config = _config(max_concurrency=100, requests_per_minute=600, tokens_per_minute=90_000)
    share = per_worker_config(config, 4).teacher
    assert (share.max_concurrency, share.requests_per_minute, share.tokens_per_minute) == (25, 150, 22_500)
    assert per_worker_config(config, 1).teacher == config.teacher
    assert per_worker_config(_config(max_concurrency=3), 8).teacher.max_concurrency == 1  # never 0
    assert config.teacher.max_concurrency == 100  # the driver's config is left alone


def test_placement_defaults_pool_the_model_operators_and_keep_the_caption_in_process():
    ray = PipelineConfig.model_validate({"sources": [], "runner": {"ray": {
        "operators": {"ocr": {"actors": 3, "num_gpus": 1}}}}}).runner.ray
    assert (ray.placement("ocr").actors, ray.placement("ocr").num_gpus) == (3, 1)
    assert ray.placement("face_detection").actors == 1 and ray.placement("face_detection").num_gpus == 0
    assert ray.placement("image_caption").actors == 0


def test_a_bad_ray_key_is_one_line_naming_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sources: []\nrunner:\n  ray:\n    operators:\n      ocrr: {actors: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "runner.ray.operators" in str(err.value) and "\n" not in str(err.value)


def test_only_operators_switches_every_other_operator_off():
    cfg = only_operators(OperatorsConfig(), ["ocr", "rag"])
    assert cfg.ocr.backend == "auto" and cfg.rag.backend == "auto"
    assert {cfg.face_detection.backend, cfg.label_bbox.backend, cfg.image_caption.backend} == {"off"}


class _Local:
    available = ["image_caption"]
    executions = 0

    def get(self, name):
        return name

    def run(self, name, images, **args):
        return OperatorResult(operator=name, text="local", backend="template", version="1")


def test_pooled_operators_route_in_process_operators_locally_and_report_pool_width():
    pooled = PooledOperators(_Local(), {"ocr": ["h1", "h2"]}, {"ocr": {"backend": "rapidocr", "width": 8}},
                             {"label_bbox": "no weights", "ocr": "stale"})
    assert pooled.available == ["image_caption", "ocr"]  # canonical order
    assert pooled.unavailable == {"label_bbox": "no weights"}
    assert pooled.get("ocr").backend.max_parallel_calls == 8  # the rationale loop's thread width
    assert pooled.run("image_caption", []).text == "local"


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayEngineError, match=r"pip install -e '\.\[ray\]'"):
        _import_ray()


def test_cli_engine_ray_without_ray_prints_one_line(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("sources: []\n")
    result = CliRunner().invoke(app, ["generate", "--config", str(config), "--out", str(tmp_path / "o"),
                                      "--engine", "ray", "--quiet"])
    assert result.exit_code == 2
    assert "[ray]" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / ".mmat-work").exists()
