"""Visual-CoT short answers lose the sentence period some subsets write (v7w: "Foliage.") under the
"single word or phrase" instruction; the answer as the upstream wrote it stays in `meta.native_answer`
(issue 29). A period that belongs to the answer (`P.M.`) stays, and a long answer is left as written."""
from __future__ import annotations

import json

from tests.fixtures.upstream.make_fixtures import write_image


def _read(tmp_path, rows):
    from generation.sources import visual_cot
    from generation.sources.base import SourceConfig

    folder = tmp_path / "viscot"
    (folder / "viscot_dataset").mkdir(parents=True)
    lines = []
    for n, (question, answer) in enumerate(rows):
        image = f"{n:04d}.jpg"
        write_image(folder / "cot" / "v7w" / image, "JPEG")
        lines.append(json.dumps({"question": question, "answer": answer, "image": image, "width": 48, "height": 32,
                                 "bboxs": [[2, 2, 20, 20]], "dataset": "v7w", "split": "train"}))
    (folder / "viscot_dataset" / "v7w_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    cfg = SourceConfig.model_validate({"kind": "visual_cot", "path": str(folder)})
    return [located.item.build().qas[0] for located in visual_cot.read(cfg)]


def test_visual_cot_short_answers_lose_the_added_period_and_keep_the_native_one(tmp_path):
    foliage, clock, long = _read(tmp_path, [
        ("What is in the background?", "Foliage."),
        ("When does the shop open?", "9 A.M."),
        ("Why is the man holding an umbrella?", "Because it is raining hard and he does not want to get wet."),
    ])
    assert foliage.answer == "Foliage" and foliage.meta["native_answer"] == "Foliage."
    assert foliage.question.endswith("Answer the question using a single word or phrase.")
    assert clock.answer == "9 A.M." and "native_answer" not in clock.meta
    assert long.answer.endswith("wet.") and "native_answer" not in long.meta
