"""Costs come from a price table per model: an unknown model's cost is "unknown" (the dry run says how to
set `teacher.prices`) instead of GPT-4o's price, a local model is free, and the dry run reports a
missing API key for a teacher that needs one."""
from __future__ import annotations

import pytest

from generation.config import PriceTable, TeacherConfig
from generation.teachers.prices import cost_usd, price_of, teacher_prices
from tests.runner_support import REPO, mmat, mmat_env


def test_price_table_by_model_with_snapshots_and_provider_prefixes():
    assert price_of("gpt-4o") == PriceTable(prompt_per_1m=2.5, completion_per_1m=10.0, cached_prompt_per_1m=1.25)
    assert price_of("gpt-4o-mini") == PriceTable(prompt_per_1m=0.15, completion_per_1m=0.6, cached_prompt_per_1m=0.075)
    assert price_of("gpt-4.1") == PriceTable(prompt_per_1m=2.0, completion_per_1m=8.0, cached_prompt_per_1m=0.5)
    assert price_of("gpt-4.1-mini").cached_prompt_per_1m == 0.1  # 25 % of the gpt-4.1 family's input price
    assert price_of("gpt-5").cached_prompt_per_1m == 0.125 and price_of("gpt-5-nano").cached_prompt_per_1m == 0.005
    assert price_of("gpt-4o-2024-08-06") == price_of("gpt-4o") == price_of("openai/gpt-4o")
    assert price_of("Qwen2.5-VL-72B") is None and price_of("gpt-4o-turbo-preview") is None


def test_cached_prompt_tokens_cost_the_cached_price_and_a_table_without_one_bills_them_in_full():
    gpt4o = price_of("gpt-4o")
    # 10,000 prompt tokens of which 8,000 cached, 500 completion: 2,000 x 2.5 + 8,000 x 1.25 + 500 x 10 per 1M
    assert cost_usd(gpt4o, 10_000, 8_000, 500) == pytest.approx((2_000 * 2.5 + 8_000 * 1.25 + 500 * 10) / 1e6)
    own = PriceTable(prompt_per_1m=1.0, completion_per_1m=2.0)  # no cached price: cached tokens at 1.0
    assert cost_usd(own, 1_000, 900, 0) == pytest.approx(1_000 / 1e6)
    assert cost_usd(gpt4o, 100, 500, 0) == pytest.approx(100 * 1.25 / 1e6)  # never more cached than sent


def test_configured_prices_win_and_local_teachers_are_free():
    assert teacher_prices(TeacherConfig(kind="openai", model="Qwen2.5-VL-72B")) is None
    own = PriceTable(prompt_per_1m=1.0, completion_per_1m=2.0)
    assert teacher_prices(TeacherConfig(kind="openai", model="Qwen2.5-VL-72B", prices=own)) == own
    assert teacher_prices(TeacherConfig(kind="openai", model="gpt-4o", prices=own)) == own
    assert teacher_prices(TeacherConfig(kind="offline")).prompt_per_1m == 0.0
    assert teacher_prices(TeacherConfig(kind="llamacpp", model_path="m.gguf")).completion_per_1m == 0.0


def _dry_run(tmp_path, *flags, **env):
    base = {k: v for k, v in mmat_env().items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = mmat("generate", "--config", REPO / "configs/demo.yaml", "--out", tmp_path / "out", "--dry-run",
                  "--teacher", "openai", *flags, cwd=tmp_path, env={**base, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_dry_run_prices_an_unknown_model_as_unknown_and_says_how_to_set_prices(tmp_path):
    out = _dry_run(tmp_path, "--model", "Qwen2.5-VL-72B", "--base-url", "http://127.0.0.1:9/v1")
    assert "estimated cost: unknown (no price known for model 'Qwen2.5-VL-72B'; set teacher.prices:" in out
    assert "$4.00" not in out  # GPT-4o's price, which the engine used to charge any model
    assert "API key" not in out  # a local server needs none


@pytest.mark.parametrize("key", [None, "sk-test-key-set-0123456789"])
def test_dry_run_reports_a_missing_api_key_and_prices_a_known_model(tmp_path, key):
    out = _dry_run(tmp_path, "--model", "gpt-4o-mini", **({"OPENAI_API_KEY": key} if key else {}))
    assert "estimated cost: up to $0.25" in out  # 640 calls x (1600 x $0.15 + 250 x $0.60) / 1M
    missing = "API key: missing: teacher.kind is openai but the environment variable OPENAI_API_KEY is not set"
    assert (missing in out) == (key is None)
