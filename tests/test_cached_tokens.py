"""Issue 31, point 2: the prompt tokens a provider served from its cache are read from the reply's usage
block (OpenAI, vLLM, SGLang, DeepSeek-style and llama.cpp shapes), recorded in the rows'
`teacher.cached_tokens` and billed at the model's cached price. The test server counts them the way
OpenAI does (tests/prefix_cache.py)."""
from __future__ import annotations

import asyncio

import pytest

from generation.config import TeacherConfig
from generation.rationale import RationaleSettings, generate_trajectory
from generation.schema import QA, ImageRef, Sample
from generation.teachers.chat_client import usage_tokens
from generation.teachers.openai_teacher import OpenAITeacher
from generation.teachers.prices import price_of
from operators.images import LoadedImage
from tests.dataset_factory import png_bytes
from tests.openai_server import OpenAICompatServer
from tests.prefix_cache import IMAGE_TOKENS, PrefixCache, prompt_tokens


@pytest.mark.parametrize("reply, expected", [
    ({"usage": {"prompt_tokens": 2000, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 1792}}},
     (2000, 1792, 50)),  # OpenAI; vLLM with --enable-prompt-tokens-details; SGLang
    ({"usage": {"prompt_tokens": 2000, "completion_tokens": 50, "prompt_tokens_details": None}}, (2000, 0, 50)),
    ({"usage": {"prompt_tokens": 900, "completion_tokens": 5, "prompt_cache_hit_tokens": 640}}, (900, 640, 5)),
    ({"usage": {"prompt_tokens": 900, "completion_tokens": 5, "cached_tokens": 512}}, (900, 512, 5)),
    ({"usage": {"prompt_tokens": 900, "completion_tokens": 5}, "timings": {"cache_n": 700}}, (900, 700, 5)),  # llama.cpp
    ({"usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 500}}},
     (100, 100, 5)),  # never more cached than sent
    ({"usage": {"prompt_tokens": "x", "prompt_tokens_details": {"cached_tokens": -3}}}, (0, 0, 0)),
    ({}, (0, 0, 0)),
])
def test_cached_tokens_are_read_from_every_servers_usage_block(reply, expected):
    assert usage_tokens(reply) == expected


def test_the_test_servers_cache_counts_like_openai():
    cache = PrefixCache()
    system = {"role": "system", "content": "x" * 4400}  # 1,100 tokens + the role marker
    first = {"messages": [system, {"role": "user", "content": "a question"}]}
    assert cache.account(first) == (prompt_tokens(first), 0)  # nothing seen yet
    again = {"messages": [system, {"role": "user", "content": "another question, a longer one"}]}
    tokens, cached = cache.account(again)
    assert cached == 1024 and tokens > cached  # the shared prefix, rounded down to 1,024 + 128 k
    short = {"messages": [{"role": "system", "content": "y" * 400}]}
    assert cache.account(short) == (prompt_tokens(short), 0) and cache.account(short)[1] == 0  # under 1,024: never
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:a"}}]}]}
    assert prompt_tokens(image) == IMAGE_TOKENS + prompt_tokens({"messages": [{"role": "user", "content": []}]})
    schema_a = {**first, "response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}
    schema_b = {**first, "response_format": {"type": "json_schema", "json_schema": {"name": "b"}}}
    cache.account(schema_a)
    assert cache.account(schema_b)[1] == 0  # the schema comes first: another schema, another prefix


def test_rows_record_cached_tokens_and_bill_them_at_the_cached_price():
    sample = Sample(id="cauldron/iconqa/7", source="cauldron", subset="iconqa", images=[ImageRef(data=png_bytes(2))],
                    qas=[QA(question="Which animal is shown?", answer="yes")])
    cache = PrefixCache()
    with OpenAICompatServer(prefix_cache=cache) as server:
        cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, max_retries=0, shared_schema=True)  # as OpenAI

        async def run():
            teacher = OpenAITeacher(cfg, api_key="sk-test-cached-0123456789", base_url=server.url)
            try:
                images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
                trajectory = await generate_trajectory(sample, images, teacher, _no_operators(), RationaleSettings())
                return trajectory, teacher.stats.usage
            finally:
                await teacher.aclose()

        trajectory, totals = asyncio.run(run())
        sent = [r for r in server.requests if r["status"] == 200]
    usage = trajectory.usage
    assert len(sent) >= 3  # step, general check, final answer
    assert usage.prompt_tokens == sum(r["prompt_tokens"] for r in sent)
    assert usage.cached_tokens == sum(r["cached_tokens"] for r in sent) == cache.cached_tokens
    assert usage.cached_tokens >= 0.5 * usage.prompt_tokens  # the later calls reuse the first one's prefix
    price = price_of("gpt-4o")
    assert usage.cost_usd == pytest.approx(((usage.prompt_tokens - usage.cached_tokens) * 2.5
                                            + usage.cached_tokens * 1.25 + usage.completion_tokens * 10.0) / 1e6)
    assert price.cached_prompt_per_1m == 1.25 and totals.cached_tokens == usage.cached_tokens


def _no_operators():
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    off = {"backend": "off"}
    return build_operators(OperatorsConfig.model_validate(
        {"ocr": off, "face_detection": off, "label_bbox": off, "image_caption": off, "rag": off}), None)
