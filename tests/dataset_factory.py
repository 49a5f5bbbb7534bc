"""Build a small, realistic mmat-1m dataset folder for tests (DESIGN §6-§7).

    from tests.dataset_factory import make_dataset_folder
    folder = make_dataset_folder(tmp_path, n_rows_per_source=4)          # tmp_path/mmat-1m
    load_dataset(str(folder), "orr")                                     # needs a card: see below

The folder holds parquet shards only (`data/{rr,orr}/{source}/{split}-00000-of-00001.parquet`); pass
`card=True` to also render `README.md` with `publishing.card.write_card`, which is what makes
`load_dataset(folder, "orr")` find the configs.

Rows are deterministic functions of `(source, split, index)`: a folder built with more rows holds every
row of a smaller one plus new ones, which is what a "v1.1.0 with more rows" looks like. Each dialogue
becomes one RR row and one ORR row with the same id, in the layouts of DESIGN §5: content-block
messages, one image block per image in the first user turn, operator results as user turns in RR,
`<|begin_api_invoke|>` blocks in ORR. Some rows carry two QA pairs (cauldron), a reflection
(every third row; `math` for tabmwp), a RAG query (infoseek) and two images (every fourth row).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Optional

import datasets
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from mmat_1m import FEATURES, FORMATS, SOURCES, SPLITS, shard_dir, shard_name

TEACHER_MODEL = "gpt-4o-2024-08-06"
ENGINE_VERSION = "0.1.0"
SYSTEM_PROMPT = (
    "You are a multimodal reasoning agent. Solve the question step by step. In each step write "
    "<THOUGHT>...</THOUGHT>, optionally <OPERATOR>name</OPERATOR> (image_caption, ocr, label_bbox, "
    "face_detection) and <RAG>query</RAG>, then <SIGNAL>continue|reflection|end</SIGNAL>."
)
_SUBSETS = {
    "visual_cot": ("gqa", "textvqa"),
    "llava_cot": ("chartqa", "ai2d"),
    "cauldron": ("st_vqa", "iconqa", "robut_wtq"),
    "tabmwp": ("tabmwp",),
    "infoseek": ("infoseek",),
}
_OPERATORS = {
    "visual_cot": ["label_bbox"],
    "llava_cot": ["image_caption"],
    "cauldron": ["ocr"],
    "tabmwp": ["ocr"],
    "infoseek": ["image_caption"],
}
_BACKENDS = {"label_bbox": "grounding_dino", "image_caption": "template", "face_detection": "deepface", "rag": "local"}


def backend_of(operator: str, index: int) -> str:
    """The backend a row's observation names: OCR alternates PaddleOCR and rapidocr by row index."""
    if operator == "ocr":
        return "paddle" if index % 2 == 0 else "rapidocr"
    return _BACKENDS[operator]


def png_bytes(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    """A tiny, valid PNG whose pixels depend on `seed`."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    ImageDraw.Draw(img).rectangle([2, 2, 10 + seed % 10, 12], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image() -> dict:
    return {"type": "image", "text": None}


def _step_text(step: dict) -> str:
    out = f"<THOUGHT>{step['thought']}</THOUGHT>"
    if step["operators"]:
        out += f"<OPERATOR>{', '.join(step['operators'])}</OPERATOR>"
    if step["rag_query"]:
        out += f"<RAG>{step['rag_query']}</RAG>"
    return out + f"<SIGNAL>{step['signal']}</SIGNAL>"


def _turn_after(step: dict, question: str) -> str:
    if step["signal"] == "reflection":
        return "The previous step contains an error. Please make a reflection."
    if step["signal"] == "end":
        return f"Based on the above information, please summarize and give the answer to the initial question: {question}"
    if not step["observations"]:
        return "No additional operator or rag results were selected in the previous step. Please continue your reasoning."
    names = ", ".join(dict.fromkeys(o["operator"] for o in step["observations"]))
    blocks = " ".join(f"-{o['operator']} information: {o['text']}" for o in step["observations"])
    return f"Here are {names} results from the previous step:{blocks} Please continue your reasoning."


def make_dialogue(source: str, split: str, index: int) -> dict[str, dict]:
    """The RR and ORR rows (FEATURES schema, images as PNG bytes) of one synthetic dialogue."""
    subsets = _SUBSETS.get(source, (source,))
    subset = subsets[index % len(subsets)]
    native = f"{split}-{index:06d}"
    row_id = f"{source}/{subset}/{native}"
    n_images = 2 if index % 4 == 3 else 1
    images = [{"bytes": png_bytes(index * 7 + k + len(source)), "path": None} for k in range(n_images)]
    n_qas = 2 if source == "cauldron" and index % 2 == 1 else 1
    reflection_kind = "none"
    if index % 3 == 2:
        reflection_kind = "math" if source == "tabmwp" else "general"
    operators = _OPERATORS.get(source, ["ocr"])

    qas = []
    for q in range(n_qas):
        question = f"What is shown in region {q + 1} of {subset} image {index}? Answer with a single word."
        answer = f"answer{index}-{q}"
        steps = []
        obs = [{"operator": op, "text": f"{op} output {index}.{q}: label 'sign' at [0.1, 0.2, 0.5, 0.6]",
                "backend": backend_of(op, index)} for op in operators]
        rag_query = f"what is {subset} item {index}" if source == "infoseek" else None
        if rag_query:
            obs.append({"operator": "rag", "text": f"Search result about item {index}.", "backend": backend_of("rag", index)})
        steps.append({"thought": f"I should inspect the image with {', '.join(operators)}.", "operators": list(operators),
                      "rag_query": rag_query, "signal": "continue", "observations": obs})
        if reflection_kind != "none" and q == 0:
            steps.append({"thought": f"The answer is probably answer{index + 1}-{q}.", "operators": [],
                          "rag_query": None, "signal": "reflection", "observations": []})
        steps.append({"thought": f"The {operators[0]} result shows the answer is {answer}.", "operators": [],
                      "rag_query": None, "signal": "end", "observations": []})
        qas.append({"question": question, "answer": answer, "steps": steps})

    rr = [{"role": "system", "content": [_text(SYSTEM_PROMPT)]}]
    for q, qa in enumerate(qas):
        rr.append({"role": "user", "content": ([_image() for _ in images] if q == 0 else []) + [_text(qa["question"])]})
        for step in qa["steps"]:
            rr.append({"role": "assistant", "content": [_text(_step_text(step))]})
            rr.append({"role": "user", "content": [_text(_turn_after(step, qa["question"]))]})
        rr.append({"role": "assistant", "content": [_text(qa["answer"])]})

    api = []
    for qa in qas:
        for step in qa["steps"]:
            for o in step["observations"]:
                if o["operator"] != "rag" and (o["operator"], o["text"]) not in api:
                    api.append((o["operator"], o["text"]))
    orr = []
    for q, qa in enumerate(qas):
        text = qa["question"]
        if q == 0 and api:
            text += "\nUse the following API outputs to help answer the question:\n" + "\n".join(
                f"<|begin_api_invoke|>{n}<|end_api_invoke|><|begin_result_of_api|>{r}<|end_result_of_api|>" for n, r in api
            )
        orr.append({"role": "user", "content": ([_image() for _ in images] if q == 0 else []) + [_text(text)]})
        thought = " ".join(s["thought"] for s in qa["steps"] if s["signal"] != "reflection")
        orr.append({"role": "assistant", "content": [_text(f"<THOUGHT>{thought}</THOUGHT><ANSWER>The answer is: {qa['answer']}</ANSWER>")]})

    common = {
        "id": row_id,
        "source": source,
        "subset": subset,
        "images": images,
        "steps": [s for qa in qas for s in qa["steps"]],
        "question": qas[0]["question"],
        "answer": qas[0]["answer"],
        "reflection": {"kind": reflection_kind, "reason": "" if reflection_kind == "none" else "The step guessed."},
        "teacher": {"model": TEACHER_MODEL, "prompt_tokens": 1000 + index, "completion_tokens": 200 + index,
                    "latency_s": 1.5, "cost_usd": 0.0045},
        "meta": {"operators_available": ["image_caption", "ocr", "label_bbox", "face_detection", "rag"],
                 "verified": True, "judge_score": None},
        "engine_version": ENGINE_VERSION,
    }
    return {"rr": {**common, "format": "rr", "messages": rr}, "orr": {**common, "format": "orr", "messages": orr}}


def make_dataset_folder(
    root: str | Path,
    *,
    n_rows_per_source: int = 4,
    n_validation_per_source: Optional[int] = None,
    sources: Iterable[str] = SOURCES,
    formats: Iterable[str] = FORMATS,
    name: str = "mmat-1m",
    card: bool = False,
) -> Path:
    """Write `root/name/data/{format}/{source}/{split}-00000-of-00001.parquet` and return the folder.

    `n_rows_per_source` dialogues per source go to `train`, `n_validation_per_source` (default
    `max(1, n_rows_per_source // 4)`; 0 for none) to `validation`; each dialogue is one row in every
    format of `formats`. Existing shards in the folder are replaced. With `card=True` the dataset
    card (`README.md`, configs and dataset_info) is rendered too.
    """
    folder = Path(root) / name
    n_val = max(1, n_rows_per_source // 4) if n_validation_per_source is None else n_validation_per_source
    counts = {"train": n_rows_per_source, "validation": n_val}
    formats = tuple(formats)
    for source in sources:
        for split in SPLITS:
            dialogues = [make_dialogue(source, split, i) for i in range(counts[split])]
            for fmt in formats:
                out = folder / shard_dir(fmt, source)
                for old in out.glob(f"{split}-*.parquet"):
                    old.unlink()
                if not dialogues:
                    continue
                out.mkdir(parents=True, exist_ok=True)
                # The table keeps the `huggingface` features metadata; pq.write_table avoids progress bars.
                ds = datasets.Dataset.from_list([d[fmt] for d in dialogues], features=FEATURES)
                pq.write_table(ds.data.table, out / shard_name(split, 0, 1))
    if card:
        from publishing.card import write_card

        write_card(folder)
    return folder
