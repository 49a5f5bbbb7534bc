"""The least ANY prompt layout could bill at gpt-4o while the cache serves >= 80 % of the prompt tokens:
issue 31's two targets held together, bounded from the requests a run really sent.

Why a bound and not another layout: gpt-4o bills an uncached prompt token at 1 and a cached one at 1/2,
so a sample costs C = U + K/2 token-equivalents (U uncached, K cached). A cached share K / (U + K) of
at least 0.80 means K >= 4U, hence C >= 3U: the share target puts a floor of three times the uncached
tokens under the bill. And U has a floor of its own. A request's cached part is a prefix an earlier
request began with; everything after a sample's image is new to the cache the first time the sample
shows it, so each distinct line and image a sample's requests carry is uncached at least once, unless
it sits before the image in a prefix S that every sample shares, which the cache serves only from
1,024 tokens. Three cases cover every layout:

  A  no call starts with such an S: C >= 3 * U_min, U_min = the sample's images and the distinct lines
     of its requests' texts, each counted once (however a layout splits or orders them);
  B  every call does (the rules of every task in one long shared system text): each call pays >= 512
     for S even at the cached price, so C >= 512 * calls + 765 * images + 382.5 * images * (image
     calls - 1), the image paid in full once and cached in every later call that needs it;
  M  some calls do and some do not: the two kinds share no prefix, so each pays the image uncached
     once, and the lines only this sample shows (its question, steps, results) are new at least once:
     U >= 2 * 765 * images + those lines, C >= max(3U, 512 + 2 * 765 * images + 382.5 * images *
     (image calls - 2)).

All three ignore the 128-token steps (the last part of every prefix is uncached too), so the true floor
is higher. The target is 0.65 x the baseline's prompt tokens per sample (its list price). When every
bound lies above it, no layout that shows the teacher the same texts meets the two targets together.

`floor(records)` takes the answered requests of a run (tests/openai_server.py's `requests`, or the
lines `benchmarks/teacher_cost.py --dump DIR` writes: image data cut to a digest); tokens are counted as
tests/prefix_cache.py counts them (4 characters a token, 765 an image).

    .venv/bin/python benchmarks/cost_floor.py /tmp/dump/1-after_this_tree_.jsonl --baseline-tokens 6768 --samples 70
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.prefix_cache import CHARS_PER_TOKEN, IMAGE_TOKENS, MIN_PREFIX, prompt_parts, prompt_tokens  # noqa: E402

# The tasks whose prompts showed the image before the shared layout (92c8ade~1): the general
# reflection read the reasoning as text. Case B pays the image's cached price only in these calls.
IMAGE_TASKS = frozenset({"rationale_step", "caption", "reflection_math", "final_answer"})
QUESTION = re.compile(r"Question: [^\n]*")
SCHEMA_MARK = "<|schema|>"  # how tests/prefix_cache.prompt_parts begins the schema's text


def _parts(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(image ids, texts) of one request, the schema counted as a text when one is sent (not the markers)."""
    images: list[str] = []
    texts: list[str] = []
    for kind, part in prompt_parts(payload):
        if kind == "image":
            images.append(hashlib.sha1(str(part.get("url", "")).encode()).hexdigest())
        elif kind != "mark":
            texts.append(part)
    return images, texts


def _lines(texts: list[str]) -> set[str]:
    """The texts' distinct non-blank lines: a rule two task texts repeat is counted once."""
    return {line.strip() for text in texts for line in text.split("\n") if line.strip()}


def floor(records: Iterable[dict[str, Any]], baseline_tokens: float, samples: int = 0) -> dict[str, float]:
    """Per sample: calls, U_min, the bounds of cases A, B and M and of the cost alone, against the target
    0.65 x `baseline_tokens` (the baseline's prompt tokens per sample). The requests that carry the same
    images are one group (samples that share an image may share its prefix too); totals are divided by
    `samples`, the run's dialogues (default: the number of groups)."""
    records = list(records)
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    by_question: dict[str, tuple[str, ...]] = {}
    textual: list[tuple[dict[str, Any], list[str]]] = []
    for record in records:
        images, texts = _parts(record.get("payload") or {})
        if not images:  # a text-only call: it belongs to the sample whose question it repeats
            textual.append((record, texts))
            continue
        key = tuple(sorted(set(images)))
        group = groups.setdefault(key, {"calls": 0, "image_calls": 0, "texts": set()})
        group["calls"] += 1
        group["image_calls"] += record.get("task") in IMAGE_TASKS
        group["texts"].update(_lines(texts))
        for text in texts:
            for question in QUESTION.findall(text):
                by_question.setdefault(question, key)
    for record, texts in textual:
        key = next((by_question[q] for t in texts for q in QUESTION.findall(t) if q in by_question), None)
        if key is None:
            continue
        groups[key]["calls"] += 1
        groups[key]["image_calls"] += record.get("task") in IMAGE_TASKS
        groups[key]["texts"].update(_lines(texts))
    samples = max(samples or len(groups), 1)
    schema_tokens = sum(math.ceil(len(line) / CHARS_PER_TOKEN) for group in groups.values()
                        for line in group["texts"] if line.startswith(SCHEMA_MARK))
    seen_in = Counter(line for group in groups.values() for line in group["texts"])
    calls = u_min = bound_b = bound_m = images_per_set = 0.0
    carried = sum(prompt_tokens(record.get("payload") or {}) for record in records)
    carried_unformatted = sum(prompt_tokens({k: v for k, v in (record.get("payload") or {}).items()
                                             if k != "response_format"}) for record in records)
    for key, group in groups.items():
        images = len(key)
        text_tokens = sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in group["texts"])
        u_min += images * IMAGE_TOKENS + text_tokens
        calls += group["calls"]
        images_per_set += images / len(groups)
        own = sum(math.ceil(len(line) / CHARS_PER_TOKEN) for line in group["texts"] if seen_in[line] == 1)
        u_mixed = 2 * images * IMAGE_TOKENS + own
        bound_m += max(3 * u_mixed, MIN_PREFIX / 2 + 2 * images * IMAGE_TOKENS
                       + images * IMAGE_TOKENS / 2 * max(group["image_calls"] - 2, 0))
        bound_b += (MIN_PREFIX / 2 * group["calls"] + images * IMAGE_TOKENS
                    + images * IMAGE_TOKENS / 2 * max(group["image_calls"] - 1, 0))
    return {"samples": samples, "calls_per_sample": calls / samples, "u_min": u_min / samples,
            "bound_a": 3 * u_min / samples, "bound_b": bound_b / samples,
            "bound_mixed": bound_m / samples, 
            # the cost target alone: every token a call carries at the cached price at least, each distinct
            # part once more at the full price (with and without the response schema in the prompt)
            "cost_only": (carried + u_min) / 2 / samples,
            "cost_only_unformatted": (carried_unformatted + u_min - schema_tokens) / 2 / samples,
            "groups": len(groups),
            # were no image shared between samples, M's U alone would be two uncached images a sample
            "bound_mixed_own_images": 3 * 2 * IMAGE_TOKENS * images_per_set, "target": 0.65 * baseline_tokens}


def report(numbers: dict[str, float]) -> str:
    """The bounds in words, in token-equivalents per sample and in gpt-4o input dollars per 1,000 samples."""
    def at_least(key: str) -> str:
        return f">= {numbers[key]:,.0f} (${numbers[key] * 2.50 / 1000:.2f} / 1,000)"

    lowest = min(numbers["bound_a"], numbers["bound_b"], numbers["bound_mixed"])
    own = min(numbers["bound_a"], numbers["bound_b"], numbers["bound_mixed_own_images"])
    verdict = ("no layout showing the teacher these texts meets both targets" if lowest > numbers["target"] else
               "no layout showing the teacher these texts meets both targets where samples do not share images; "
               "M's crude bound leaves room only through images samples share" if own > numbers["target"] else
               "the bounds leave room for a layout that meets both")
    rows = [
        f"Floor of the gpt-4o input bill at a cached share >= 0.80, per sample ({numbers['samples']} samples, "
        f"{numbers['calls_per_sample']:.2f} calls each):",
        f"  U_min (images + distinct lines, each once): {numbers['u_min']:,.0f} tokens",
        f"  A, no shared 1,024-token prefix: 3 x U_min {at_least('bound_a')}",
        f"  B, a shared prefix of 1,024+: {at_least('bound_b')}",
        f"  M, in some calls only: {at_least('bound_mixed')}; {numbers['groups']} image sets for "
        f"{numbers['samples']} samples; no image shared, 3 x 2 x 765 x images {at_least('bound_mixed_own_images')}",
        f"  the cost target alone (any share), each call carrying what it carries now: {at_least('cost_only')}; "
        f"without the response schema {at_least('cost_only_unformatted')}",
        f"  target, 0.65 x the baseline: <= {numbers['target']:,.0f} (${numbers['target'] * 2.50 / 1000:.2f} / 1,000)",
        f"  -> {verdict}",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dump", type=Path, help="a request dump of benchmarks/teacher_cost.py --dump (one version)")
    parser.add_argument("--baseline-tokens", type=float, required=True,
                        help="the baseline's prompt tokens per sample (its list price), e.g. 6768")
    parser.add_argument("--samples", type=int, default=0, help="the run's dialogues (the demo: 70)")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.dump.read_text().splitlines() if line.strip()]
    print(report(floor(records, args.baseline_tokens, args.samples)))


if __name__ == "__main__":
    main()
