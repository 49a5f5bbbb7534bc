"""The one sanitiser: text from a model, an operator, a retrieved page or a source record is data.

Guarantee: `as_data(text)` returns text that contains none of

- the dialogue layouts' own markup (DESIGN §5): `<THOUGHT>`, `<OPERATOR>`, `<RAG>`, `<SIGNAL>`,
  `<ANSWER>` and the ORR API tokens `<|begin_api_invoke|>`…; LLaVA-CoT's `<SUMMARY>`, `<CAPTION>`,
  `<REASONING>`, `<CONCLUSION>`; and the RR observation turn's separator `-NAME information:`;
- the chat-template control tokens of common models: every `<|…|>` token (ChatML `<|im_start|>`,
  Llama 3 `<|eot_id|>`, Phi, Qwen-VL `<|vision_start|>`, `<|endoftext|>`), DeepSeek's `<｜…｜>`, Gemma's
  `<start_of_turn>`/`<end_of_turn>`, Llama 2 / Mistral `[INST]`, `<<SYS>>`, `[TOOL_CALLS]`…, `<s>`,
  `</s>`, `<think>`, `<tool_call>` and the image placeholders `<image>`/`<video>`/`<audio>`;
- control characters other than newline and tab (DEL included), and lone UTF-16 surrogates (which
  no parquet or JSON writer can encode);
- carriage returns (`\r\n` and a lone `\r` become `\n`: rows use one line-break form, and a bare CR
  can make a terminal or a diff show a line that overwrites what came before it);
- Unicode format characters (category Cf: the bidi controls U+202A-U+202E and U+2066-U+2069 that
  reorder what a reader sees, zero-width characters, U+FEFF, the invisible tag characters
  U+E0000-U+E007F that can smuggle instructions, soft hyphens). They are removed, not replaced by a
  space, so a word they sat inside stays one word. Zero-width joiners go too: the rows are English
  text, and one rule with no exceptions is one a test can pin.

A removed token becomes a space, and removal repeats until nothing matches, so pieces around a removed
token can never join into a new one (`<|im_<|x|>start|>`). So wherever the renderer puts data, the
only markup in a rendered row is the renderer's own, and the strict parser
(`generation.dialogue_format`) reads every row back exactly.

Operators use `quote_data` (the same cleaning, whitespace collapsed to one line, optionally truncated)
for what they read from pixels and the web; `generation.integration.build_rows` applies `as_data` to
every text field of a row, once, where rows are built.
"""
from __future__ import annotations

import re
from typing import Optional

# Tag names of the two layouts (DESIGN §5), of LLaVA-CoT's native rationale, and the XML-like control
# tokens of common chat templates. Matched case-insensitively, with optional spaces and slashes.
_TAG_NAMES = (
    "THOUGHT", "OPERATOR", "RAG", "SIGNAL", "ANSWER",
    "SUMMARY", "CAPTION", "REASONING", "CONCLUSION",
    "start_of_turn", "end_of_turn", "start_of_image", "end_of_image", "think", "tool_call", "tool_response",
    "s", "bos", "eos", "pad", "unk", r"image(?:_\d+)?", "video", "audio",
)
_BRACKET_NAMES = ("INST", "SYSTEM_PROMPT", "TOOL_CALLS", "AVAILABLE_TOOLS", "TOOL_RESULTS", "TOOL_CONTENT",
                  "IMG", "IMG_BREAK", "IMG_END")
MARKUP = re.compile(
    r"<\|[^|<>]{0,64}\|>"                                     # <|im_start|>, <|eot_id|>, <|begin_api_invoke|>
    r"|<｜[^｜<>]{0,64}｜>"                                    # DeepSeek <｜begin▁of▁sentence｜>
    r"|<\s*/?\s*(?:" + "|".join(_TAG_NAMES) + r")\s*/?\s*>"   # <THOUGHT>, </s>, <start_of_turn>, <image>
    r"|\[\s*/?\s*(?:" + "|".join(_BRACKET_NAMES) + r")\s*\]"  # [INST], [/INST], [TOOL_CALLS]
    r"|<</?SYS>>",                                            # Llama 2 system block
    re.IGNORECASE,
)
# The RR observation turn separates results with " -NAME information: " (DESIGN §5); data that
# carried it could fake a second result. A space after the dash keeps the words and breaks the marker.
OBSERVATION_MARKER = re.compile(r"(?:(?<=\s)|^)-(?=[a-z_]+ information:)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# Every code point of Unicode category Cf (Unicode 15.1; `tests/test_sanitize_format_chars.py` checks it
# covers every Cf character of the running Python's `unicodedata`). A class, not a per-character
# `unicodedata.category` call: this runs on every text of every row.
FORMAT_CHARS = re.compile(
    r"[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")


def _may_hold_markup(text: str) -> bool:
    """Every token starts with `<` or `[`: texts without either (most) skip the regex."""
    return "<" in text or "[" in text


def strip_markup(text: str) -> str:
    """`text` with every layout tag and control token replaced by a space, until none is left."""
    if not _may_hold_markup(text):
        return text
    while True:
        cleaned = MARKUP.sub(" ", text)
        if cleaned == text:
            return text
        text = cleaned


def find_markup(text: str) -> list[str]:
    """Every layout tag or control token in `text` (what `as_data` would remove), in order."""
    return [m.group(0) for m in MARKUP.finditer(text)] if _may_hold_markup(text) else []


def as_data(text: Optional[str]) -> str:
    """`text` made safe to place anywhere in an RR/ORR row (see the module docstring); line breaks kept,
    ends stripped. `None` becomes ""."""
    if text is None:
        return ""
    text = str(text)
    if not text.isprintable():  # fast path: printable text holds no control, format character or surrogate
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = FORMAT_CHARS.sub("", _CONTROL.sub(" ", text))
    text = strip_markup(text)
    if " information:" in text:
        text = OBSERVATION_MARKER.sub("- ", text)
    return text.strip()


def quote_data(text: str, limit: Optional[int] = None) -> str:
    """Make untrusted text (OCR, web pages, passages) safe to quote in a dialogue: `as_data`, whitespace
    collapsed to single spaces, optionally truncated with an ellipsis: never longer than `limit`
    (`limit` 0 or less gives "")."""
    text = re.sub(r"\s+", " ", as_data(str(text))).strip()
    if limit is not None and limit < 1:
        return ""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
