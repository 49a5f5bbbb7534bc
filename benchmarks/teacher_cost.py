"""What a sample costs at the teacher's endpoint, before vs after a change, in one run (issue 31).

`mmat generate` runs the demo (configs/demo.yaml, its five sources) with `--teacher openai` against the
local OpenAI-compatible test server (tests/openai_server.py), once with the code of a baseline git ref
(exported with `git archive` into a temporary folder: the working tree is not touched) and once with
the code here. The server answers like a teacher that calls the image_caption tool in its first step
and answers in its second (so a question makes a step, a caption call, a step, the reflection check(s)
and the final answer), and it counts every prompt the way OpenAI's prompt cache does
(tests/prefix_cache.py: prefixes from 1,024 tokens in 128-token steps, the structured-output schema
first, images at 765 tokens, text at 4 characters a token). Completion tokens are the reply's length
at 4 characters a token (a reply to the one shared schema carries its `{"reply": ...}` wrapper).

Printed per version: calls, prompt / cached / completion tokens per sample, the cacheable share, and
USD per 1,000 samples at gpt-4o, gpt-4.1 and gpt-5 list prices (input without and with the cache
discount, completion, total); `--json PATH` writes the same numbers. Last, the floor no layout of the
after code's texts could go under with both of issue 31's targets held (benchmarks/cost_floor.py).

    .venv/bin/python benchmarks/teacher_cost.py --baseline-ref 92c8ade~1 --also-ref cd776a0 --also-json-object
    .venv/bin/python benchmarks/teacher_cost.py --baseline-ref HEAD~3 --limit 20
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.batch_server import BatchServer  # noqa: E402
from tests.openai_server import OpenAICompatServer, Reply, default_reply  # noqa: E402
from tests.prefix_cache import PrefixCache  # noqa: E402
from cost_floor import floor, report  # noqa: E402  (benchmarks/ is sys.path[0] here)

MODELS = ("gpt-4o", "gpt-4.1", "gpt-5")
PRICES = {"gpt-4o": (2.50, 1.25, 10.00), "gpt-4.1": (2.00, 0.50, 8.00), "gpt-5": (1.25, 0.125, 10.00)}  # in, cached, out
CHARS_PER_TOKEN = 4


def _user_texts(payload: dict[str, Any]) -> str:
    out = []
    for message in payload.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        out += [content] if isinstance(content, str) else [b.get("text", "") for b in content or []
                                                           if isinstance(b, dict)]
    return "\n".join(out)


def scripted_teacher(task: str, payload: dict[str, Any]) -> Reply:
    """A teacher that captions in its first step and answers in its second; replies sized like a model's."""
    content: Any = default_reply(task, payload).content
    if task == "rationale_step":
        first = "Step 1:" not in _user_texts(payload)
        content = {"thought": ("I need a description of the scene before I can answer the question." if first else
                               "The description names what the question asks about, so I can answer it now."),
                   "operators": ["image_caption"] if first else [], "labels": [],
                   "rag": {"needed": False, "query": None}, "next_action": "continue" if first else "final_answer"}
    fmt = (payload.get("response_format") or {}).get("json_schema") or {}
    if fmt.get("name") == "teacher_reply":  # the one schema of every task: the model writes what it says
        content = {"reply": _as_schema_says(task, content, fmt.get("schema") or {})}
    text = json.dumps(content)
    return Reply(content=text, completion_tokens=math.ceil(len(text) / CHARS_PER_TOKEN))


def _as_schema_says(task: str, content: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The task's reply in the shape the shared schema of the code under test asks for (cd776a0's or later)."""
    variants = ((schema.get("properties") or {}).get("reply") or {}).get("anyOf") or []
    props = [set((v.get("properties") or {})) for v in variants]
    if task == "rationale_step":
        step = next((v["properties"] for v in variants if "next_action" in v.get("properties", {})), {})
        if (step.get("rag") or {}).get("type") != "object":  # the query or null
            content = {**content, "rag": content["rag"]["query"] if content["rag"]["needed"] else None}
    elif task == "reflection_general" and {"reason"} not in props:  # one object for both reflections
        content = {**content, "thought": None}
    elif task == "caption":
        graph = content["scene_graph"]
        if any("objects" in p for p in props):  # flat, attributes as [object, value, ...]
            content = {**{k: v for k, v in graph.items() if k != "attributes"}, "attributes": [
                [k, *v] for k, v in graph["attributes"].items()], "caption": content["caption"]}
        else:
            content = {**content, "scene_graph": {**graph, "attributes": [
                {"object": k, "values": v} for k, v in graph["attributes"].items()]}}
    return content


def export_ref(ref: str, into: Path) -> Path:
    """The tree of `ref` in `into` (git archive: no worktree, no change to this checkout)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def demo_config(code: Path, into: Path, batch: bool = False, structured_output: str = "auto") -> Path:
    text = (code / "configs/demo.yaml").read_text().replace("../samples/", f"{code}/samples/")
    if batch:  # teacher.batch: every call through the Batch API (tests/batch_server.py), in rounds
        text = text.replace("teacher:\n  kind: offline", "teacher:\n  batch: true\n  batch_options: "
                            "{poll_s: 0.05, flush_wait_s: 0.5}\n  kind: openai", 1)
    if structured_output != "auto":  # e.g. json_object: no schema in the request (the system text gives the replies)
        text = text.replace("teacher:\n", f"teacher:\n  structured_output: {structured_output}\n", 1)
    if "shared_schema" in (code / "generation/config.py").read_text():
        # the scripted endpoint stands for OpenAI, which reads the schema as prompt tokens: the shared schema,
        # as a run against api.openai.com gets (a loopback URL would otherwise pick each task's own)
        text = text.replace("teacher:\n", "teacher:\n  shared_schema: true\n", 1)
    path = into / "demo.yaml"
    path.write_text(text)
    return path


def write_requests(records: list[dict[str, Any]], path: Path) -> None:
    """Every answered request as one JSON line (task, prompt/cached tokens, payload; image data cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            text = json.dumps({k: record.get(k) for k in ("task", "prompt_tokens", "cached_tokens", "payload")})
            out.write(re.sub(r'"data:image/[^"]{40,}"', _cut_image, text) + "\n")


def _cut_image(match: "re.Match[str]") -> str:
    url = match.group(0)
    return f'{url[:30]}...sha1:{hashlib.sha1(url.encode()).hexdigest()[:12]}"'


def count_dialogues(out: Path) -> int:
    import pyarrow.parquet as pq

    files = [p for p in out.rglob("*.parquet") if "/rr" in str(p.relative_to(out)).replace("\\", "/")]
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def run_version(name: str, code: Path, work: Path, limit: int, batch: bool = False,
                structured_output: str = "auto", dump: Path | None = None,
                requests_out: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cache = PrefixCache()
    server_type = BatchServer if batch else OpenAICompatServer
    with server_type(default_fn=scripted_teacher, prefix_cache=cache, model="gpt-4o") as server:
        config = demo_config(code, work, batch, structured_output)
        env = {**os.environ, "PYTHONPATH": str(code), "OPENAI_API_KEY": "sk-bench-0123456789", "COLUMNS": "200"}
        args = [sys.executable, "-m", "mmat_cli", "generate", "--config", str(config), "--out", str(work / "out"),
                "--teacher", "openai", "--base-url", server.url, "--model", "gpt-4o", "--quiet"]
        if limit:
            args += ["--limit", str(limit)]
        result = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True, timeout=3000)
        if result.returncode not in (0, 3):
            raise SystemExit(f"{name}: mmat generate exited {result.returncode}: {result.stderr[-2000:]}")
        done = [r for r in server.requests if r["status"] == 200]
        if dump is not None:
            write_requests(done, dump)
        if requests_out is not None:
            requests_out.extend(done)
        batches = getattr(server, "creates", 0)
    samples = count_dialogues(work / "out")
    by_task: dict[str, int] = {}
    for record in done:
        by_task[record["task"]] = by_task.get(record["task"], 0) + 1
    completion = sum(math.ceil(len(json.dumps(scripted_teacher(r["task"], r["payload"]).content)) / CHARS_PER_TOKEN)
                     for r in done)
    prompt = sum(r.get("prompt_tokens", 0) for r in done)
    cached = sum(r.get("cached_tokens", 0) for r in done)
    per = max(samples, 1)
    row: dict[str, Any] = {
        "version": name, "samples": samples, "calls": len(done), "calls_per_sample": len(done) / per,
        "calls_by_task": by_task, "prompt_per_sample": prompt / per, "cached_per_sample": cached / per,
        "completion_per_sample": completion / per, "cacheable_share": cached / prompt if prompt else 0.0,
        "batches": batches,
    }
    scale = 0.5 if batch else 1.0  # the Batch API bills every token at half the price
    for model in MODELS:
        p_in, p_cached, p_out = (price * scale for price in PRICES[model])
        row[model] = {
            "input_list": 1000 * prompt / per * p_in / 1e6,
            "input_cached": 1000 * ((prompt - cached) * p_in + cached * p_cached) / per / 1e6,
            "completion": 1000 * completion / per * p_out / 1e6,
        }
        row[model]["total_cached"] = row[model]["input_cached"] + row[model]["completion"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    names = [r["version"] for r in rows]
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(rows)]

    def add(label: str, fmt: str, get) -> None:
        lines.append(f"| {label} | " + " | ".join(fmt.format(get(r)) for r in rows) + " |")

    add("samples (dialogues)", "{:d}", lambda r: r["samples"])
    add("teacher calls per sample", "{:.2f}", lambda r: r["calls_per_sample"])
    add("prompt tokens per sample", "{:,.0f}", lambda r: r["prompt_per_sample"])
    add("cached prompt tokens per sample", "{:,.0f}", lambda r: r["cached_per_sample"])
    add("cacheable share of prompt tokens", "{:.2f}", lambda r: r["cacheable_share"])
    add("completion tokens per sample", "{:,.0f}", lambda r: r["completion_per_sample"])
    add("batches (Batch API jobs; rounds of a sample's calls)", "{:d}", lambda r: r.get("batches", 0))
    for model in MODELS:
        add(f"{model}: input $ / 1,000 samples, list price", "${:.2f}", lambda r, m=model: r[m]["input_list"])
        add(f"{model}: input $ / 1,000 samples, cache discount", "${:.2f}", lambda r, m=model: r[m]["input_cached"])
        add(f"{model}: completion $ / 1,000 samples", "${:.2f}", lambda r, m=model: r[m]["completion"])
        add(f"{model}: total $ / 1,000 samples (cached)", "${:.2f}", lambda r, m=model: r[m]["total_cached"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-ref", required=True, help="git ref of the code to compare against (e.g. HEAD~5)")
    parser.add_argument("--also-ref", action="append", default=[],
                        help="another git ref measured between the baseline and after (repeatable), e.g. cd776a0")
    parser.add_argument("--after-ref", help="git ref of the code after (default: this working tree as it is)")
    parser.add_argument("--limit", type=int, default=0, help="samples per run (0: the whole demo)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    parser.add_argument("--dump", type=Path, help="write every answered request of each version here (JSONL)")
    parser.add_argument("--no-batch", action="store_true", help="skip the batch run (after, teacher.batch: true)")
    parser.add_argument("--also-json-object", action="store_true",
                        help="one more run: the after code with teacher.structured_output: json_object (no schema sent)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="teacher-cost-") as tmp:
        tmp_path = Path(tmp)
        versions = [(f"before ({args.baseline_ref})", export_ref(args.baseline_ref, tmp_path / "code-0"))]
        versions += [(f"{ref}", export_ref(ref, tmp_path / f"code-{i}")) for i, ref in enumerate(args.also_ref, 1)]
        after_code = export_ref(args.after_ref, tmp_path / "after-code") if args.after_ref else REPO
        after_name = f"after ({args.after_ref})" if args.after_ref else "after (this tree)"
        versions.append((after_name, after_code))
        after_requests: list[dict[str, Any]] = []
        for index, (name, code) in enumerate(versions):
            work = tmp_path / f"run-{index}"
            work.mkdir()
            dump = args.dump / f"{index}-{re.sub(r'[^A-Za-z0-9.~-]+', '_', name)}.jsonl" if args.dump else None
            rows.append(run_version(name, code, work, args.limit, dump=dump,
                                    requests_out=after_requests if index == len(versions) - 1 else None))
            print(f"{name}: {rows[-1]['samples']} samples, calls by task {rows[-1]['calls_by_task']}", flush=True)
        if not args.no_batch:  # the same code with teacher.batch: true, every token at the batch price
            work = tmp_path / "batch"
            work.mkdir()
            rows.append(run_version(f"{after_name.split(' (')[0]}, batch", after_code, work, args.limit, batch=True))
            print(f"batch: {rows[-1]['samples']} samples in {rows[-1]['batches']} batches", flush=True)
        if args.also_json_object:
            work = tmp_path / "json-object"
            work.mkdir()
            rows.append(run_version(f"{after_name.split(' (')[0]}, json_object", after_code, work, args.limit,
                                    structured_output="json_object"))
    before, after = rows[0], rows[len(versions) - 1]
    print(table(rows))
    ratio = after["gpt-4o"]["input_cached"] / before["gpt-4o"]["input_list"] if before["gpt-4o"]["input_list"] else 0
    print(f"\nGPT-4o input cost with the cache, after / before at list price: {ratio:.2f}x "
          f"(target <= 0.65); cacheable share after: {after['cacheable_share']:.2f} (target >= 0.80)")
    # how low any layout could go with both targets held, from the texts the after code sends (cost_floor.py)
    print("\n" + report(floor(after_requests, before["prompt_per_sample"], after["samples"])))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
