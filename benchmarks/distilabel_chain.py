"""distilabel 1.5.3's side of `benchmarks/engine_scale.py`: N rows through 5 chained `TextGeneration`
steps (`OpenAILLM` against the same latency-simulating server), so every row needs 5 sequential
calls like one of our samples. Runs in distilabel's own venv (it imports nothing of this project):

    /tmp/distilabel/bin/python benchmarks/distilabel_chain.py --url URL -n 500 -c 64

`input_batch_size` = C for every step: each step's `OpenAILLM` sends a batch's C calls at once
(asyncio), and the steps run in their own processes, pipelined. Prints one JSON line: rows, wall
seconds (pipeline start-up included, as our run's `elapsed` includes planning), calls.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

CHAIN = 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("-n", "--rows", type=int, default=500)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-key")

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    rows = [{"instruction": f"Question {i}: what does the image show?"} for i in range(args.rows)]
    with Pipeline(name="mmat-engine-scale", cache_dir=tempfile.mkdtemp(prefix="distilabel-cache-")) as pipeline:
        previous = LoadDataFromDicts(data=rows, batch_size=args.concurrency)
        for k in range(CHAIN):
            llm = OpenAILLM(model="bench-model", base_url=args.url, api_key="sk-benchmark-not-a-key",
                            max_retries=2, timeout=60, generation_kwargs={"max_new_tokens": 64})
            mappings = {} if k == 0 else {"instruction": f"g{k - 1}"}
            step = TextGeneration(name=f"call_{k}", llm=llm, input_batch_size=args.concurrency,
                                  input_mappings=mappings,
                                  output_mappings={"generation": f"g{k}", "model_name": f"model_{k}"})
            previous >> step
            previous = step
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - start
    done = [row for config in distiset.values() for split in config.values() for row in split]
    answered = sum(1 for row in done if row.get(f"g{CHAIN - 1}") is not None)  # every call of the chain answered
    print(json.dumps({"rows": len(done), "answered": answered, "wall_s": wall, "calls": len(done) * CHAIN}))


if __name__ == "__main__":
    main()
