"""Hand-made mutants of the text modules (redact, sanitize, answers, verify's answer rules, the TabMWP
adapter's answer parsing) and how many of them their tests kill (issue 33).

    .venv/bin/python benchmarks/mutants_text.py [--ref HEAD] [--only redact,sanitize] [--extra-tests FILE]

Why a copy: the mutants are applied one at a time to a snapshot of the committed tree (`git archive
REF`) in a temporary folder, never to the working tree other sessions are using. Each mutant is one
exact text replacement that must occur exactly once (a mutant that no longer applies is reported as
such, not counted); the module's test files then run with `-x`; a failing run kills the mutant.
`--extra-tests` adds a test file (from the snapshot) to every module's set, e.g. the contract tests
of `tests/test_mutation_contracts_text.py`, so the same mutants can be counted before and after.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from mutant_run import kill_rates  # benchmarks/ is sys.path[0] when this runs

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"

# module -> (its test files, [(file, old, new, what the mutant breaks)])
MUTANTS: dict[str, tuple[list[str], list[tuple[str, str, str, str]]]] = {
    "redact": (["tests/test_teacher_redact.py"], [
        ("generation/redact.py", r"hf_[A-Za-z0-9]{8,}", r"hf_[A-Za-z0-9]{37,}", "hf_ token only at 40+ chars"),
        ("generation/redact.py", r'_SECRET_KEY = re.compile(r"(api', r'_SECRET_KEY = re.compile(r"(^api',
         "*_api_key fields masked only when the name starts with the word"),
        ("generation/redact.py", "sorted(values, key=len, reverse=True)", "sorted(values, key=len)",
         "secrets not masked longest first"),
        ("generation/redact.py", "_MIN_SECRET_LEN = 6", "_MIN_SECRET_LEN = 1", "short placeholders masked"),
        ("generation/redact.py", 'm.group(1) + MASK + "@"', 'm.group(0)', "URL credentials kept"),
        ("generation/redact.py", r"sk-[A-Za-z0-9_\-*.]{5,}", r"sk-[A-Za-z0-9_\-]{5,}", "half-masked sk-…*** kept"),
        ("generation/redact.py", r're.compile(r"(?i)\bbearer', r're.compile(r"\bbearer', "Bearer (capital) kept"),
        ("generation/redact.py", "return [redact_fields(v) for v in value]", "return list(value)",
         "lists in fields not redacted"),
        ("generation/redact.py", '"OPENAI_API_KEY", "HF_TOKEN",', '"OPENAI_API_KEY",', "HF_TOKEN not a known secret"),
        ("generation/redact.py", "        _registered.add(value)", "        pass", "register_secret a no-op"),
        ("generation/redact.py", "record.stack_info = redact(record.stack_info)", "pass", "stack info not scrubbed"),
    ]),
    "sanitize": (["tests/test_integrity_format.py"], [
        ("generation/sanitize.py", r"\x0e-\x1f\x7f", r"\x0e-\x1f", "DEL not removed"),
        ("generation/sanitize.py", "text[: limit - 1].rstrip()", "text[: limit].rstrip()", "quote_data one over its limit"),
        ("generation/sanitize.py", "            return text\n        text = cleaned", "            return text\n"
         "        return cleaned", "markup removed only once (pieces can join)"),
        ("generation/sanitize.py", 'text = OBSERVATION_MARKER.sub("- ", text)', "pass", "observation marker kept"),
        ("generation/sanitize.py", r'r"|<</?SYS>>"', r'r"|<<SYS>>"', "Llama-2 <</SYS>> kept"),
        ("generation/sanitize.py", "    re.IGNORECASE,\n)", ")", "markup case-sensitive"),
        ("generation/sanitize.py", "    return text.strip()\n", "    return text\n", "ends not stripped"),
        ("generation/sanitize.py", r're.sub(r"\s+", " ", as_data', r're.sub(r" +", " ", as_data',
         "quote_data keeps newlines"),
        ("generation/sanitize.py", 'return "<" in text or "[" in text', 'return "<" in text', "[INST] skipped by the fast path"),
        ("generation/sanitize.py", r"\ud800-\udfff", r"\ud800-\udbff", "low surrogates kept"),
        # issue 30's additions (absent before: reported as not applying)
        ("generation/sanitize.py", r"\u200b-\u200f\u202a-\u202e", r"\u200b-\u200f", "bidi overrides kept"),
        ("generation/sanitize.py", r"\U000e0001\U000e0020-\U000e007f", r"\U000e0001", "tag characters kept"),
        ("generation/sanitize.py", '.replace("\\r", "\\n")', "", "a bare CR kept"),
        ("generation/sanitize.py", 'FORMAT_CHARS.sub("", _CONTROL', 'FORMAT_CHARS.sub(" ", _CONTROL',
         "format characters split words"),
        ("generation/sanitize.py", "    if limit is not None and limit < 1:\n        return \"\"\n", "",
         "quote_data(x, 0) longer than 0"),
    ]),
    "answers": (["tests/test_verify.py", "tests/test_sources_upstream.py"], [
        ("generation/answers.py", '{".", "-", "/", "%"}', '{".", "-", "/"}', "45% equals 45"),
        ("generation/answers.py", "    text = _THOUSANDS.sub(\"\", text)\n", "", "1,000 differs from 1000"),
        ("generation/answers.py", r're.compile(r"\b(a|an|the)\b")', r're.compile(r"\b(a|an)\b")', "'the' kept"),
        ("generation/answers.py", "if not unicodedata.combining(ch))", ")", "accents kept"),
        ("generation/answers.py", r"(?:the\s+)?(?:final\s+)?(?:answer", r"(?:the\s+)?(?:answer",
         "'Final answer:' lead-in kept"),
        ("generation/answers.py", 'or text.endswith("..") or', "or", "an ellipsis loses a period"),
        ("generation/answers.py", r"\b(?:[A-Za-z]\.){2,}", r"\b(?:[A-Za-z]\.){3,}", "U.S. loses its period"),
        ("generation/answers.py", r'_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")',
         r'_NON_DECIMAL_PERIOD = re.compile(r"\.(?!\d)")', "v.2 keeps its period"),
        ("generation/answers.py", ".casefold().strip()", ".strip()", "case matters"),
        ("generation/answers.py", "text = _DECIMAL.sub(_plain_decimal, text)", "pass", "18.60 differs from 18.6"),
    ]),
    "verify": (["tests/test_verify.py"], [
        ("generation/verify.py", "lo - 1e-9 <= value <= hi + 1e-9", "lo < value < hi", "[v, v] never matches"),
        ("generation/verify.py", "return p.split()[0] == r", "return r in p.split()", "any word decides yes/no"),
        ("generation/verify.py", "return p.split()[0] == r", "return p.startswith(r)", "'yesterday' is yes"),
        ("generation/verify.py", 'ranges.append((float(item["wikidata"]), float(item["wikidata"])))', "pass",
         "wikidata value ignored"),
        ("generation/verify.py", "items = [items]  # a bare [lo, hi]", "pass", "bare [lo, hi] read as two values"),
    ]),
    "tabmwp": (["tests/test_sources.py", "tests/test_sources_upstream.py"], [
        ("generation/sources/tabmwp.py", 'native_answer = str(require(rec, FIELDS["answer"], sid)).strip()',
         'native_answer = str(require(rec, FIELDS["answer"], sid))', "answer not stripped"),
        ("generation/sources/tabmwp.py", "        if letter is None:\n            raise quarantine(", "        if False:\n"
         "            raise quarantine(", "an answer outside the choices kept"),
        ("generation/sources/tabmwp.py", 'question, answer = f"{question}\\n{format_choices(choices)}", letter',
         'question, answer = f"{question}\\n{format_choices(choices)}", native_answer', "choice text as the answer"),
        ("generation/sources/tabmwp.py", "answer_text=native_answer if choices else None", "answer_text=native_answer",
         "answer_text on free-text problems"),
        ("generation/sources/tabmwp.py", 'choices = [str(c) for c in (rec.get(FIELDS["choices"]) or [])]',
         'choices = list(rec.get(FIELDS["choices"]) or [])', "numeric choices not made text"),
        ("generation/sources/base.py", "if key and key == normalise_answer(c):", "if key == normalise_answer(c):",
         "an empty answer matches an empty choice"),
        ("generation/sources/base.py", 'letter.group(1).upper() in LETTERS[: len(choices)]',
         'letter.group(1).upper() in LETTERS', "a letter beyond the choices accepted"),
        ("generation/sources/base.py", 'return "\\n".join(f"{LETTERS[i]}. {c}"', 'return "\\n".join(f"{LETTERS[i]}) {c}"',
         "choice layout changed"),
        ("generation/sources/tabmwp.py", "meta=qa_meta(answer, math=True,", "meta=qa_meta(answer, math=False,",
         "text answers not marked math"),
    ]),
    # issue 30's new rules (absent before)
    "image_paths": (["tests/test_symlinked_sources.py", "tests/test_sources_upstream.py"], [
        ("generation/sources/image_paths.py", "roots = [source_folder, hf_hub_cache()]", "roots = [source_folder]",
         "the HF cache not followed"),
        ("generation/sources/image_paths.py", "        roots.append(real)\n", "", "image_roots ignored"),
        ("generation/sources/image_paths.py", 'split("/")[0] == ".."', 'split("/")[0] == "..." ', ".. not refused as written"),
        ("generation/sources/image_paths.py", "    if refused and not usable:", "    if False:", "no stop at the start"),
        ("generation/sources/image_paths.py", "                usable = True  # refused for another reason",
         "                pass  # refused for another reason", "mixed reasons stop the source"),
        ("generation/sources/image_paths.py", 'return (Path(home).expanduser() / "hub").resolve()',
         'return Path(home).expanduser().resolve()', "HF_HOME itself, not HF_HOME/hub"),
        ("generation/sources/image_paths.py", "        if not real.is_dir():", "        if False:", "a missing image_roots entry accepted"),
    ]),
    "replies+factory": (["tests/test_unknown_operators.py", "tests/test_api_key_errors.py", "tests/test_teacher_parts.py"], [
        ("generation/teachers/replies.py", "        if cls.offered is None:\n            return value",
         "        return value", "unknown operators accepted"),
        ("generation/teachers/replies.py", r're.sub(r"[\s\-]+", "_", name.strip()).casefold()', "name",
         "OCR not read as ocr"),
        ("generation/teachers/replies.py", 'for name in (*cls.offered, "rag")', "for name in cls.offered",
         "rag refused"),
        ("generation/teachers/factory.py", 'if not (" " <= char <= "~"):', 'if char < " ":', "non-ASCII keys accepted"),
        ("generation/teachers/factory.py", "        key = env_api_key(cfg) or NO_KEY_PLACEHOLDER",
         '        key = (os.environ.get(cfg.api_key_env) or "").strip() or NO_KEY_PLACEHOLDER',
         "llama.cpp keys unchecked"),
    ]),
}


def snapshot(ref: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run_tests(tree: Path, tests: list[str]) -> int:
    cmd = [str(PYTHON), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--timeout", "300", *tests]
    return subprocess.run(cmd, cwd=tree, capture_output=True).returncode


def run_cli(table: dict, prefix: str) -> None:
    """The mutant scripts' command line: `--ref` (the snapshot), `--only` (modules), `--extra-tests` (test
    files added to every module's; one not committed yet is copied from the working tree)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--only", default="")
    parser.add_argument("--extra-tests", action="append", default=[])
    args = parser.parse_args()
    wanted = [m for m in args.only.split(",") if m] or list(table)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        tree = Path(tmp)
        snapshot(args.ref, tree)
        for extra in args.extra_tests:
            if not (tree / extra).exists() and Path(extra).exists():
                (tree / extra).write_text(Path(extra).read_text())
        check = subprocess.run([str(PYTHON), "-c", "import generation; print(generation.__file__)"], cwd=tree,
                               capture_output=True, text=True).stdout.strip()
        assert check.startswith(str(tree)), f"the snapshot's modules are not the ones imported: {check}"
        kill_rates(tree, table, wanted, args.extra_tests, run_tests)


def main() -> None:
    run_cli(MUTANTS, "mutants-text-")

if __name__ == "__main__":
    sys.exit(main())
