"""`mmat eval --format all` on the demo validation split: per-question latency of ORR and RR against the
plain baseline, measured in the same run (the paper reports ORR ≈ 2×, RR 3–4× the baseline).

The model is the scripted endpoint of the tests (`tests/agent_support.py`: `demo_script`, whose
accuracy per format is known by hand) answering after a fixed `--latency` per call, so the ratios show
what the runtime adds around a model of that speed: RR's extra turns, ORR's and RR's operators (the demo's own backends and operator cache; what generation
already computed is a cache hit). With `--gguf FILE` the model is that GGUF served by llama.cpp
instead (1 thread by default), and the ratios include the model's own cost of the longer prompts.

    .venv/bin/python benchmarks/agent_eval.py                          # generates the demo if --demo is absent
    .venv/bin/python benchmarks/agent_eval.py --demo /tmp/d --latency 0.5 --concurrency 4
    .venv/bin/python benchmarks/agent_eval.py --demo /tmp/d --gguf SmolLM2-135M-Instruct.Q4_1.gguf --limit 5
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.openai_server import OpenAICompatServer  # noqa: E402


def demo_folder(root: Path) -> Path:
    """`mmat generate` on the bundled demo config, in `root` (skipped when already there)."""
    config = root / "demo.yaml"
    if not (root / "mmat-1m" / "README.md").exists():
        root.mkdir(parents=True, exist_ok=True)
        config.write_text((REPO / "configs/demo.yaml").read_text().replace("samples/", f"{REPO}/samples/"))
        subprocess.run([sys.executable, "-m", "mmat_cli", "generate", "--config", str(config), "--out", "mmat-1m",
                        "-q"], cwd=root, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, help="a folder holding demo.yaml and mmat-1m/ (default: a new temp one)")
    parser.add_argument("--latency", type=float, default=0.2, help="scripted model: seconds per call")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--gguf", type=Path, help="a GGUF served by llama.cpp instead of the scripted model")
    args = parser.parse_args()
    root = demo_folder(args.demo or Path(tempfile.mkdtemp(prefix="agent-eval-")))
    work = Path(tempfile.mkdtemp(prefix="agent-eval-work-"))
    common = ["--dataset", str(root / "mmat-1m"), "--config", "orr", "--split", "validation", "--format", "all",
              "--operators-config", str(root / "demo.yaml"),
              "--cache-dir", str(root / ".mmat-work" / "mmat-1m" / "operator-cache"), "--work-dir", str(work), "-q",
              *(["--limit", str(args.limit)] if args.limit else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "220"}
    try:
        if args.gguf:
            model = ["--gguf", str(args.gguf), "--threads", "1", "--max-tokens", "64", "--max-steps", "3",
                     "--concurrency", "1", "--extra-body", json.dumps({"repeat_penalty": 1.15, "seed": 7})]
            subprocess.run([sys.executable, "-m", "mmat_cli", "eval", *common, *model], check=True, env=env)
        else:
            from tests.agent_support import demo_questions, demo_script

            scripted = demo_script(demo_questions(root / "mmat-1m"))  # accuracy: plain 4/21, ORR 10/21, RR 21/21
            with OpenAICompatServer(default_fn=scripted, latency_s=args.latency) as server:
                subprocess.run([sys.executable, "-m", "mmat_cli", "eval", *common, "--endpoint", server.url,
                                "--model", f"scripted-{args.latency}s", "--concurrency", str(args.concurrency)],
                               check=True, env=env)
        report = json.loads((work / "report.json").read_text())
        print("latency vs plain (same run): " + ", ".join(f"{fmt} {ratio:.2f}x"
                                                           for fmt, ratio in report["latency_vs_plain"].items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
