"""A scripted "tuned model" for the agent tests and benchmarks: `tests/openai_server.py` answering
each chat request from what the request itself holds, in the RR/ORR formats, so any number of
questions can run at once against one server.

    model = ScriptedTunedModel(answers={question: "42"}, rr_operators=("ocr",))
    with OpenAICompatServer(default_fn=model) as server: ...

- RR (the request opens with the system prompt): step 1 names `rr_operators` (and a `<RAG>` query
  when `rag_query` is set), every later step ends; the summary question gets the answer;
- ORR (the user turn holds "Use the following API outputs"): `<THOUGHT>…</THOUGHT><ANSWER>The answer is: X</ANSWER>`;
- plain (anything else): the short answer.
`queue(fmt, *texts)` makes the next requests of that format get those raw texts first (a malformed
step, an endless `continue`), in order. The answer to a question is `answers[question]` (per format
when `answers_by_format` is given), else "no idea". A request that ends with a format reminder gets a well-formed reply.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Optional, Sequence

from generation.dialogue_format import (
    ORR_API_INTRO,
    START_SUFFIX,
    STEP_FORMAT_REMINDER,
    SUMMARY_TURN,
    message_text,
    render_orr_reply,
    render_step,
)
from tests.openai_server import Reply, ok

SUMMARY_PREFIX = SUMMARY_TURN.split("{question}")[0]


def request_format(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or []
    if messages and messages[0].get("role") == "system":
        return "rr"
    first_user = next((message_text(m) for m in messages if m.get("role") == "user"), "")
    return "orr" if f"\n{ORR_API_INTRO}\n" in first_user else "plain"


def request_question(payload: dict[str, Any]) -> str:
    """The question as asked (RR: without " Please start your reasoning."; ORR: without the API outputs)."""
    fmt = request_format(payload)
    first_user = next(message_text(m) for m in payload["messages"] if m.get("role") == "user")
    if fmt == "rr":
        return first_user[: -len(START_SUFFIX)] if first_user.endswith(START_SUFFIX) else first_user
    if fmt == "orr":
        return first_user.split(f"\n{ORR_API_INTRO}\n", 1)[0]
    return first_user


class ScriptedTunedModel:
    def __init__(self, answers: Optional[dict[str, str]] = None,
                 answers_by_format: Optional[dict[str, dict[str, str]]] = None,
                 rr_operators: Sequence[str] = ("ocr",), rag_query: Optional[str] = None,
                 prompt_tokens: int = 100, completion_tokens: int = 20) -> None:
        self.answers = answers or {}
        self.answers_by_format = answers_by_format or {}
        self.rr_operators = tuple(rr_operators)
        self.rag_query = rag_query
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self._queued: dict[str, deque[str]] = {}

    def queue(self, fmt: str, *texts: str) -> "ScriptedTunedModel":
        self._queued.setdefault(fmt, deque()).extend(texts)
        return self

    def answer(self, fmt: str, question: str) -> str:
        table = self.answers_by_format.get(fmt, self.answers)
        return table.get(question, "no idea")

    def reply_text(self, payload: dict[str, Any]) -> str:
        fmt = request_format(payload)
        if self._queued.get(fmt):
            return self._queued[fmt].popleft()
        question = request_question(payload)
        answer = self.answer(fmt, question)
        if fmt == "plain":
            return answer
        if fmt == "orr":
            return render_orr_reply("The API outputs show what the question asks about.", answer)
        messages = payload["messages"]
        last_user = message_text(messages[-1])
        if last_user.startswith(SUMMARY_PREFIX):
            return answer
        steps = sum(1 for m in messages if m.get("role") == "assistant")
        if last_user == STEP_FORMAT_REMINDER:
            steps -= 1  # the reply that did not parse is not a step
        if steps == 0:
            return render_step("I should look at the image with the tools.", self.rr_operators, self.rag_query,
                               "continue")
        return render_step("The results above answer the question.", signal="end")

    def __call__(self, task: str, payload: dict[str, Any]) -> Reply:
        return ok(self.reply_text(payload), prompt_tokens=self.prompt_tokens,
                  completion_tokens=self.completion_tokens)


def light_operators_yaml(folder: Path) -> Path:
    """A pipeline YAML whose operators load fast (rapidocr, the template caption, no face or box model,
    RAG over the bundled corpus): for tests that drive the CLI, where building PaddleOCR would dominate."""
    repo = Path(__file__).resolve().parents[1]
    path = Path(folder) / "agent-operators.yaml"
    path.write_text(
        f"sources:\n  - {{kind: tabmwp, path: {repo / 'samples' / 'tabmwp'}}}\n"
        "operators:\n  ocr: {backend: rapidocr}\n  image_caption: {backend: template}\n"
        "  face_detection: {backend: off}\n  label_bbox: {backend: off}\n"
        f"  rag: {{backend: local, corpus: {repo / 'samples' / 'infoseek' / 'corpus'}}}\n")
    return path


def demo_questions(folder: Path, split: str = "validation") -> list[dict]:
    """A dataset folder's rows (id, source, question, answer), read straight from its ORR shards."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for shard in sorted((Path(folder) / "data" / "orr").glob(f"*/{split}-*.parquet")):
        rows += pq.read_table(shard, columns=["id", "source", "question", "answer"]).to_pylist()
    return rows



def demo_script(rows: list[dict]) -> ScriptedTunedModel:
    """The demo split's script (`mmat eval` tests, `benchmarks/agent_eval.py`): plain knows the TabMWP
    answers, ORR also The Cauldron's, RR every source's; a wrong answer elsewhere. RR calls `ocr` once."""
    right = {"plain": {"tabmwp"}, "orr": {"tabmwp", "cauldron"}, "rr": {r["source"] for r in rows}}
    return ScriptedTunedModel(answers_by_format={
        fmt: {r["question"]: (r["answer"] if r["source"] in sources else "something else") for r in rows}
        for fmt, sources in right.items()}, rr_operators=("ocr",))
