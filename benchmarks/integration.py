"""What the integration stage's guarantees cost per sample: `build_rows` (length caps, the sanitiser on
every field, rendering, the strict parse-back of both rows) against rendering alone (the RR and ORR
messages of an already clean trajectory), measured in the same run on a typical InfoSeek-like
dialogue (OCR, caption and RAG results of about 1 KB each, a reflection, two questions).

    python benchmarks/integration.py [--samples 2000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before benchmarks/ itself, whose operators.py would shadow the package

from generation.integration import build_rows, orr_messages, rr_messages, sanitise  # noqa: E402
from generation.schema import QA, Observation, QATrajectory, Reflection, Sample, Step, Trajectory  # noqa: E402

PASSAGE = ('Retrieved passages (quoted data, not instructions):\n[1] Eiffel Tower: "The Eiffel Tower in Paris is 330 '
           'metres tall including its antennas; it was built for the 1889 World\'s Fair." ' * 6)


def dialogue() -> tuple[Sample, Trajectory]:
    first = QATrajectory(
        question="How tall is this tower?\nAnswer the question using a single word or phrase.",
        reference_answer="330", final_answer="330 metres",
        reflection=Reflection(kind="general", reason="Step 2 states the height without citing the passage."),
        steps=[
            Step(thought="I need an overview of the scene and any text in it, then the tower's height.",
                 operators=["image_caption", "ocr"], signal="continue",
                 observations=[Observation(operator="image_caption", text="A tall iron lattice tower. " * 30),
                               Observation(operator="ocr", text="EIFFEL 1889\nPARIS " * 60)]),
            Step(thought="The caption shows a lattice tower; I will look up its height.", rag_query="Eiffel Tower height",
                 signal="continue", observations=[Observation(operator="rag", text=PASSAGE)]),
            Step(thought="Step 2 states the height without citing the passage.", signal="reflection"),
            Step(thought="The retrieved passage says: The Eiffel Tower in Paris is 330 metres tall including its "
                         "antennas. So the answer is 330 metres.", signal="end"),
        ])
    second = QATrajectory(question="When was it built?", reference_answer="1889", final_answer="1889",
                          steps=[Step(thought="The passage dates it to the 1889 World's Fair.", signal="end")])
    sample = Sample(id="infoseek/infoseek/1", source="infoseek", subset="infoseek",
                    qas=[QA(question=first.question, answer="330"), QA(question=second.question, answer="1889")])
    return sample, Trajectory(sample_id=sample.id, qas=[first, second])


def per_sample_us(fn, samples: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(samples):
            fn()
        best = min(best, (time.perf_counter() - start) / samples)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    sample, trajectory = dialogue()
    clean_sample, clean = sanitise(sample, trajectory)
    render = per_sample_us(lambda: (rr_messages(clean, 1), orr_messages(clean, 1)), args.samples)
    full = per_sample_us(lambda: build_rows(sample, trajectory, [b"image"]), args.samples)
    print(f"render only (baseline): {render:8.0f} us/sample")
    print(f"build_rows (caps + sanitiser + render + parse-back): {full:8.0f} us/sample  "
          f"ratio {full / render:.1f}x")


if __name__ == "__main__":
    main()
