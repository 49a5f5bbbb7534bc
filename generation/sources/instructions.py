"""Every response-style instruction the upstreams already write into their questions, in one place.

MMAT-1M appends the paper's (LLaVA-1.5's) response-style constraint to questions with a letter or a
short answer. A question that already carries an instruction of its own must end with exactly one:
a brevity or letter instruction is *replaced* by ours, a yes/no instruction is kept (it says more
than ours), and a question that opens with an instruction is left as it is. Recognising an
instruction is an exact, case-insensitive match of one of the phrases below at the end (or the
start) of the question, so adding a phrase here is all it takes to recognise a new one.

Where the phrases come from:
- The Cauldron's build script (HuggingFaceM4, the builder of `HuggingFaceM4/the_cauldron`):
  `PROMPTS_ANSWER_SHORTLY` and `QUESTION_BRIEVETY_HINT` (appended after "\\n"),
  `QUESTION_BRIEVETY_HINT_MULTI_TURN` (before the first question of a dialogue), `"Answer with the
  letter."` (every multiple-choice subset), `"\\nAnswer yes or no."` (Hateful Memes, VSR, FigureQA,
  NLVR2), the RAVEN yes/no prompts, the "new prompt" templates of ChartQA/TextVQA/DocVQA, and the
  ROBUT/HiTab `parse_table_instruct` requests (see `TABLE_DUMP_REQUESTS`).
- LLaVA-1.5 / LLaVA-CoT: "Answer the question using a single word or phrase." and "Answer with the
  option's letter from the given choices directly." (also our own constraint).
"""
from __future__ import annotations

import re
from functools import lru_cache

# The paper's response-style constraint (LLaVA-1.5's phrases), appended by `add_response_constraint`.
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."

# Brevity instructions at the end of a question: replaced by SHORT_ANSWER_PROMPT.
BREVITY_SUFFIXES: tuple[str, ...] = (
    SHORT_ANSWER_PROMPT,
    # The Cauldron, PROMPTS_ANSWER_SHORTLY
    "Give a very brief answer.", "Answer briefly.", "Write a very short answer.", "Quick response, please.",
    "Short answer required.", "Keep it brief.", "Concise answer only.", "Be succinct.",
    # The Cauldron, QUESTION_BRIEVETY_HINT
    "Make the answer very short.", "Your answer should be very brief.", "Offer a terse response.",
    "Provide a succinct answer.", "Keep it short and to the point.", "Ensure brevity in your answer.",
    "Offer a very short reply.", "Your response must be concise.", "Your answer should be compact.",
    "Provide a short and direct response.",
    # LLaVA-style variants seen in LLaVA-CoT and other instruction sets
    "Answer with a single word or phrase.", "Answer using a single word or phrase.", "Answer with a single word.",
    "Give a concise answer.",
)

# Letter instructions at the end of a multiple-choice question: replaced by MULTIPLE_CHOICE_PROMPT.
LETTER_SUFFIXES: tuple[str, ...] = (
    MULTIPLE_CHOICE_PROMPT,
    "Answer with the letter.",  # The Cauldron: every multiple-choice subset
    "Answer with the option letter.", "Answer with the letter of the right choice.",
    "Answer the question with the letter.", "Respond with the letter of the correct option.",
    "Choose the letter corresponding to the right answer.",
)

# Yes/no instructions (end or start of the question): kept, and no constraint is appended.
YES_NO_INSTRUCTIONS: tuple[str, ...] = (
    "Answer yes or no.",  # The Cauldron: Hateful Memes, VSR, FigureQA, NLVR2
    # The Cauldron, RAVEN yes/no prompts
    "Answer by yes or no.", "Yes or no.", "Yes or No?", "Yes, no?",
)

# Instructions that open a question (multi-turn hints, "new prompt" templates): the question is kept
# as it is, and no constraint is appended.
LEADING_INSTRUCTIONS: tuple[str, ...] = (
    # The Cauldron, QUESTION_BRIEVETY_HINT_MULTI_TURN (first question of a dialogue)
    "For each of the following questions, make the answer very short.",
    "Provide succinct responses to the questions below.", "Answer each question with brevity.",
    "Keep your answers concise for the following inquiries.", "Keep responses brief for each question.",
    "Offer short answers to the listed questions.", "Respond to each question with a brief answer.",
    "Keep your answers to the questions concise.", "Provide succinct answers for each question.",
    "Offer short and to-the-point responses to the questions provided.",
    "Keep your replies short for the following questions.", "Respond concisely to the questions presented.",
    "Provide terse responses to the following questions.",
    "Keep it snappy and straightforward when answering each question.", "Make your answers short.",
    "Keep your answers brief.",
    # The Cauldron "new prompt" templates (ChartQA, TextVQA, DocVQA)
    "For the question below, follow the following instructions:",
    "Answer the following question about the image using as few words as possible.",
    "Give a short and terse answer to the following question.",
    *YES_NO_INSTRUCTIONS,
)

# The Cauldron's ROBUT / HiTab "parse the table" requests: their answer is `str(table)`, a Python
# dict dump, not an answer. Dropped by the `table_dump` QA filter (SourceConfig.drop_qas).
TABLE_DUMP_REQUESTS: tuple[str, ...] = (
    "Can you parse all the data within this table?", "Parse the table in full.", "Parse the full table.",
    "Parse the full table in json format.", "Could you parse the entire table?",
    "Would you be able to parse every entry in this table?", "Help me parse the entirety of this table.",
    "Would you mind parsing the complete table?", "Write the full table.", "Can you give me this table as a dict?",
    "Can you give me this table in json format?", "Give me the full table as a dictionary.",
    "Could you parse the entire table as a dict?",
    "I'm looking to parse the entire table for insights. Could you assist me with that?",
    "Could you help me parse every detail presented in this table?",
)


@lru_cache(maxsize=None)
def _phrase(phrase: str, where: str) -> re.Pattern:
    """`phrase` at the end (or start) of a text, whitespace- and case-insensitive, as whole words."""
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.compile(rf"(?<!\S){body}\s*$" if where == "end" else rf"^\s*{body}(?!\S)", re.I)


@lru_cache(maxsize=None)
def _by_edge_word(phrases: tuple[str, ...], where: str) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """`phrases` by their last (`where="end"`) or first word, lower-cased, each list in the order of
    `phrases`; and the phrases to try whatever the text (a non-ASCII word, or no word).

    Why: a phrase can match only where the text's last (first) whitespace-separated token is that
    word, whole: `_phrase` puts `\\s+` or the text's edge on both sides of each word. Trying every
    phrase's pattern on every question was most of reading a source's records (about 70 searches per
    LLaVA-CoT sample); this leaves the one or two whose edge word is there."""
    edge_word = {p: (p.split() or [""])[-1 if where == "end" else 0] for p in phrases}
    always = tuple(p for p in phrases if not edge_word[p] or not edge_word[p].isascii())
    keys = {w.lower() for w in edge_word.values() if w and w.isascii()}
    index = {key: tuple(p for p in phrases if p in always or edge_word[p].lower() == key) for key in keys}
    return index, always


def _candidates(text: str, phrases: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The phrases of `phrases` that may match `text` at its end (start), in their order: every one
    when the text's edge token is not ASCII (where `re.I` may fold other characters onto ASCII ones,
    e.g. the Kelvin sign onto `k`; for ASCII, `re.I` is `str.lower`)."""
    tokens = text.rsplit(None, 1) if where == "end" else text.split(None, 1)
    if not tokens:
        return ()
    token = tokens[-1] if where == "end" else tokens[0]
    if not token.isascii():
        return phrases
    index, always = _by_edge_word(phrases, where)
    return index.get(token.lower(), always)


def strip_suffixes(question: str, phrases: tuple[str, ...]) -> str:
    """`question` without every phrase of `phrases` that ends it (repeatedly: `…Keep it brief.\\nAnswer
    the question using a single word or phrase.` loses both); never strips a question to nothing."""
    q = question.rstrip()
    while True:
        for phrase in _candidates(q, phrases, "end"):
            match = _phrase(phrase, "end").search(q)
            if match and q[: match.start()].strip():
                q = q[: match.start()].rstrip()
                break
        else:
            return q


def ends_with(question: str, phrases: tuple[str, ...]) -> bool:
    return any(_phrase(p, "end").search(question) for p in _candidates(question, phrases, "end"))


def starts_with(question: str, phrases: tuple[str, ...]) -> bool:
    return any(_phrase(p, "start").search(question) for p in _candidates(question, phrases, "start"))


_TABLE_DUMP_KEYS = frozenset(" ".join(p.casefold().split()) for p in TABLE_DUMP_REQUESTS)


def is_table_dump_request(question: str) -> bool:
    return " ".join(question.casefold().split()) in _TABLE_DUMP_KEYS


_OPTION_LINE = re.compile(r"^\s*(?:options?|choices?)\s*:|^\s*\(?[A-Ha-h][.):]\s+\S", re.I)
_EMPTY_CONTEXT = re.compile(r"^\s*context\s*:\s*(?:n/?a|none)?\s*\.?\s*$", re.I)
_LABEL = re.compile(r"^\s*(?:question|q)\s*:\s*", re.I)
_ALL_INSTRUCTIONS = BREVITY_SUFFIXES + LETTER_SUFFIXES + YES_NO_INSTRUCTIONS


def _only_instruction(line: str) -> bool:
    key = " ".join(line.casefold().split())
    return any(key == " ".join(p.casefold().split()) for p in _ALL_INSTRUCTIONS + LEADING_INSTRUCTIONS)


def question_content(question: str) -> str:
    """What a question asks, without its boilerplate: the option list ("Options: (A) …", "Choices:" or an
    `A. …` line and all after it), an empty "Context: N/A", a "Question:" label and every response-style
    instruction this module knows, at the end or the start. A search query is built from this (the offline teacher's RAG
    query): the boilerplate matches passages about nothing the question asks."""
    kept = []
    for line in question.replace("\r", "").split("\n"):
        line = _LABEL.sub("", line).strip()
        if kept and _OPTION_LINE.match(line):  # the options block ends what it asks ("Choices:\nA:60° B:70°");
            break                               # before any question line, "A. Lincoln was ..." is the question
        if not line or _EMPTY_CONTEXT.match(line) or _only_instruction(line):
            continue
        line = re.split(r"\s+(?:options?|choices?)\s*:", line, maxsplit=1, flags=re.I)[0]  # "... Options: (A) …"
        line = strip_suffixes(line, _ALL_INSTRUCTIONS)
        for phrase in LEADING_INSTRUCTIONS:
            rest = _phrase(phrase, "start").sub("", line, count=1).strip()
            if rest != line and rest:
                line = rest
        if not _only_instruction(line):
            kept.append(line)
    return " ".join(kept).strip() or question.strip()
