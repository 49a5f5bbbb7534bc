"""Counts issue 29 asks of the offline teacher's rows, read from a generated dataset (RR rows) and its work folder.

- **underived**: a question whose answer no thought of it states (its text, number, option letter or
  yes/no verdict): the dialogue stops at "Subtract to find the difference." and the answer comes from nowhere.
- **admit-then-answer**: a kept row one of whose thoughts says the tools cannot confirm the answer.
- **grounded (tool)** / **grounded (source rationale)**: the evidence kind of every question (the weakest
  counts for the row): tool results and arithmetic from them, else the thoughts marked as the source's own
  rationale (`generation.quality.evidence_kinds`), else none.
- **kept** / **quarantined**: rows in the dataset, and samples in the work folder's `quarantine.jsonl`.

`python -m tests.offline_teacher_measure DATASET [WORK]` prints them per source.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional

ADMITS = re.compile(r"cannot confirm|can't confirm|could not confirm|None of these results shows|No tool result shows|"
                    r"does not settle the question", re.I)


def evidence_kind(question: str, steps: list[Any], answer: str, prior: Any = None) -> tuple[str, Any]:
    """("tool" | "source_rationale" | "none", the tool evidence after this question)."""
    from generation.quality.definitions import StepView, judge_question
    from generation.quality.evidence_kinds import is_source_rationale, rationale_text

    verdict, evidence = judge_question(question, steps, answer, prior=prior)
    if verdict.grounded:
        return "tool", evidence
    marked = [rationale_text(s.thought) for s in steps if is_source_rationale(s.thought)]
    if marked:
        views = list(steps) + [StepView("", "continue", tuple(("source_rationale", t) for t in marked))]
        if judge_question(question, views, answer, prior=prior)[0].grounded:
            return "source_rationale", evidence
    return "none", evidence


def underived(question: str, steps: list[Any], answer: str) -> bool:
    from generation.quality.definitions import answer_target, question_choices, states_answer

    target = answer_target(answer, question_choices(question))
    return not any(states_answer(s.thought, target, question) for s in steps if s.thought)


def admits(steps: list[Any]) -> bool:
    return any(ADMITS.search(s.thought or "") for s in steps)


def row_counts(row: dict[str, Any]) -> dict[str, Any]:
    from generation.dialogue_format import parse_rr

    questions = parse_rr(row["messages"]).questions
    kinds, evidence, out = [], None, Counter()
    for q in questions:
        kind, evidence = evidence_kind(q.question, list(q.steps), q.answer, evidence)
        kinds.append(kind)
        out["underived"] += underived(q.question, list(q.steps), q.answer)
        out["admit_then_answer"] += admits(list(q.steps))
    order = {"tool": 0, "source_rationale": 1, "none": 2}
    return {"kind": max(kinds, key=order.__getitem__) if kinds else "none", "questions": len(questions), **out}


def rows(dataset: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    found = []
    for path in sorted((dataset / "data" / "rr").rglob("*.parquet")):
        found += pq.read_table(path).to_pylist()
    return found


def measure(dataset: Path, work: Optional[Path] = None) -> dict[str, dict[str, Any]]:
    """Per source (and "all"): rows kept, quarantined, questions, underived, admit_then_answer (rows), tool,
    source_rationale, none (rows by evidence kind)."""
    table: dict[str, Counter] = defaultdict(Counter)
    for row in rows(dataset):
        counts = row_counts(row)
        for key in (row["source"], "all"):
            t = table[key]
            t["kept"] += 1
            t["questions"] += counts["questions"]
            t["underived"] += counts["underived"]
            t["admit_then_answer"] += counts["admit_then_answer"] > 0
            t[counts["kind"]] += 1
    quarantine = (work / "quarantine.jsonl") if work else None
    if quarantine and quarantine.is_file():
        for line in quarantine.read_text().splitlines():
            rec = json.loads(line)
            source = str(rec.get("sample_id") or rec.get("id") or "?").split("/")[0]
            for key in (source, "all"):
                table[key]["quarantined"] += 1
                table[key][f"q: {str(rec.get('message') or rec.get('reason') or '')[:40]}"] += 1
    return {k: dict(v) for k, v in sorted(table.items())}


if __name__ == "__main__":
    out = measure(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    for source, counts in out.items():
        kept = counts.get("kept", 0)
        tool = counts.get("tool", 0)
        print(f"{source:12} kept {kept:4} quarantined {counts.get('quarantined', 0):4} | underived "
              f"{counts.get('underived', 0):3} | admit-then-answer {counts.get('admit_then_answer', 0):3} | tool "
              f"{tool:4} ({tool / max(kept, 1):.2f}) source_rationale {counts.get('source_rationale', 0):3} none "
              f"{counts.get('none', 0):3}")
        for key, n in counts.items():
            if key.startswith("q: "):
                print(f"{'':12}   {n:4} {key}")


def unshown_values(dataset: Path, problems: Path) -> tuple[int, int]:
    """(TabMWP rows, rows with a thought that cites a value of the source's table no tool returned): a digit run
    of a table cell in a thought, absent from every OCR result and from the question, outside the thoughts that
    quote the source's rationale or say they use it."""
    from generation.quality.evidence_kinds import is_source_rationale
    from generation.teachers.offline import BRIDGE_TAIL

    digits = re.compile(r"\d[\d,]*(?:\.\d+)?")
    tables = {}
    for path in problems.glob("problems_*.json"):
        for pid, rec in json.loads(path.read_text()).items():
            tables[pid] = {d for col in (rec.get("table_for_pd") or {}).values() for c in col for d in digits.findall(str(c))}
    total = bad = 0
    for row in rows(dataset):
        if row["source"] != "tabmwp":
            continue
        total += 1
        cells = tables.get(row["id"].split("/")[-1], set())
        shown = {d for s in row["steps"] for o in s["observations"] or [] for d in digits.findall(o["text"])}
        shown |= set(digits.findall(row["question"]))
        shown |= {c for s in row["steps"] for o in s["observations"] or [] for c in o["text"] if c.isdigit()}  # leaves: "5778"
        for step in row["steps"]:
            thought = step["thought"] or ""
            if is_source_rationale(thought) or thought.endswith(BRIDGE_TAIL):
                continue
            if any(d in cells and d not in shown for d in digits.findall(thought)):
                bad += 1
                break
    return total, bad


def silent_corrections(dataset: Path, problems: Path) -> tuple[int, int]:
    """(TabMWP rows, rows whose thoughts cite a cell of the source's table that no OCR result wrote as such,
    without quoting the OCR's reading of it: `$2/lb` where the OCR wrote `$2/1b`)."""
    from generation.quality.evidence_kinds import is_source_rationale

    tables = {}
    for path in problems.glob("problems_*.json"):
        for pid, rec in json.loads(path.read_text()).items():
            tables[pid] = {str(c).strip() for col in (rec.get("table_for_pd") or {}).values() for c in col}
    total = bad = 0
    for row in rows(dataset):
        if row["source"] != "tabmwp":
            continue
        total += 1
        ocr = " ".join(o["text"] for s in row["steps"] for o in s["observations"] or []).lower()
        ocr = " ".join(ocr.split())
        for step in row["steps"]:
            thought = step["thought"] or ""
            if is_source_rationale(thought):
                continue
            cited = [c for c in tables.get(row["id"].split("/")[-1], ()) if len(c) > 2 and c not in row["question"]
                     and re.search(rf"(?<![\w$]){re.escape(c)}(?!\w)", thought)]
            if any(" ".join(c.lower().split()) not in ocr and f"i.e. {c}" not in thought for c in cited):
                bad += 1
                break
    return total, bad
