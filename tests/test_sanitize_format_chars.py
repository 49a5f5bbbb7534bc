"""Issue 30: bidi and invisible format characters (Unicode category Cf) and CR never reach a row.

Before: U+202E, U+2066, U+FEFF and CR in a teacher reply were kept in the thought and the final answer
(NUL was stripped). Now `generation.sanitize.as_data` (applied to every text of a row) removes every
Cf character and turns CR/CRLF into a line break; `quote_data` (operators) does the same.
"""
from __future__ import annotations

import asyncio
import sys
import unicodedata
from pathlib import Path

import pytest

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig, RationaleConfig, TeacherConfig
from generation.processor import SampleProcessor
from generation.sanitize import FORMAT_CHARS, as_data, quote_data
from generation.schema import QA, ImageRef, Sample
from generation.teachers.factory import make_teacher
from operators.config import OperatorsConfig
from operators.registry import build_operators
from tests.dataset_factory import png_bytes
from tests.openai_server import OpenAICompatServer, ok

# What a hostile or careless reply carries: the right-to-left override, an isolate, a BOM, a zero-width
# space, an invisible tag character (ASCII smuggling), a soft hyphen, CRLF and a bare CR.
HOSTILE = "\u202e", "\u2066", "\u2069", "\ufeff", "\u200b", "\U000e0041", "\u00ad", "\u061c", "\u200e"


def _is_format(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or ch == "\r"


def test_every_format_character_of_this_python_is_removed_and_nothing_else():
    cf = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert len(cf) > 150 and all(FORMAT_CHARS.fullmatch(ch) for ch in cf)
    # the class holds Cf characters only (and code points this Python does not know yet)
    extra = [c for c in range(sys.maxunicode + 1) if FORMAT_CHARS.fullmatch(chr(c)) and chr(c) not in cf]
    assert all(unicodedata.category(chr(c)) == "Cn" for c in extra)
    text = "x".join(cf)
    assert as_data(text) == "x" * (len(cf) - 1)  # removed, not replaced by a space: words stay whole


@pytest.mark.parametrize("ch", HOSTILE)
def test_a_format_character_inside_a_word_is_removed_without_splitting_it(ch):
    assert as_data(f"evil{ch}txt.exe is here") == "eviltxt.exe is here"
    assert quote_data(f"  evil{ch}txt  ", 50) == "eviltxt"


def test_carriage_returns_become_line_breaks_and_nothing_else_changes():
    assert as_data("one\r\ntwo\rthree\nfour") == "one\ntwo\nthree\nfour"
    assert quote_data("one\r\ntwo\rthree") == "one two three"
    assert as_data("tab\tkept, newline\nkept") == "tab\tkept, newline\nkept"
    plain = "Ünïcödé, emoji 🐈 and CJK 猫 stay"
    assert as_data(plain) == plain


def test_a_format_character_cannot_hide_markup_from_the_sanitiser():
    # removed before the markup pass: the pieces join into a tag, which is then removed too
    assert as_data("a <THO\u200bUGHT> b") == "a   b"
    assert as_data("<|im_\ufeffstart|>x") == "x"


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def test_format_characters_in_a_teacher_reply_reach_no_row(monkeypatch, tmp_path):
    """Through the real chat path: a thought and a final answer full of them, in both formats' rows."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-format-chars-0123456")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    thought = "The sign says \u202eTIXE\u202c; \u2066isolated\u2069 text\ufeff.\r\nIt is a c\u200bat\r"
    with OpenAICompatServer() as server:
        server.script("rationale_step", ok({"thought": thought, "operators": [], "labels": [],
                                            "rag": {"needed": False, "query": None}, "next_action": "final_answer"}))
        server.script("final_answer", ok({"answer": "\ufeffc\u202eat\U000e0041\r"}))
        cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, timeout_s=3.0, max_retries=1)
        config = PipelineConfig(sources=[], teacher=cfg, rationale=RationaleConfig(max_steps=2, reflection=False))
        sample = Sample(id="cauldron/iconqa/9", source="cauldron", subset="iconqa",
                        images=[ImageRef(data=png_bytes(4))],
                        qas=[QA(question="What animal\u202e is it?\r\n", answer="cat")])
        off = {"backend": "off"}
        operators = build_operators(OperatorsConfig.model_validate(
            {"ocr": off, "face_detection": off, "label_bbox": off, "image_caption": off, "rag": off}), None)

        async def go():
            teacher = make_teacher(cfg)
            try:
                checkpoint = Checkpoint(tmp_path / "work")
                _, record = await SampleProcessor(config, teacher, operators, checkpoint).process(sample)
                assert record is None
                row = next(r for r in checkpoint.finished() if r["id"] == sample.id)
                return checkpoint.materialise(row, "rr"), checkpoint.materialise(row, "orr")
            finally:
                await teacher.aclose()

        rr, orr = asyncio.run(go())
    for row in (rr, orr):
        texts = _strings(row)
        bad = sorted({f"U+{ord(ch):04X}" for text in texts for ch in text if _is_format(ch)})
        assert bad == [], bad
    assert rr["steps"][0]["thought"] == "The sign says TIXE; isolated text.\nIt is a cat"
    assert _strings(rr["messages"][-1]["content"]) == ["text", "cat"]  # the final answer's turn
    assert rr["messages"][1]["content"][-1]["text"].startswith("What animal is it?")
