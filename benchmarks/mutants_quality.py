"""Hand-made mutants of the quality definitions (leak judgement), the grounding code (targets, evidence,
arithmetic, times, fractions) and the verifier, and how many of them their tests kill (issue 33).

    .venv/bin/python benchmarks/mutants_quality.py [--ref HEAD] [--only definitions,grounding,verify]
        [--extra-tests tests/test_mutation_contracts_quality.py]

The same machinery as `mutants_text.py` (a `git archive` snapshot of REF in a temporary folder, never the
shared working tree; one exact, once-only text replacement at a time via `mutant_run.try_mutant`; the
module's fast test files run with `-x`; a failing run kills the mutant). `--extra-tests` adds a test file
of the snapshot to every module's set, so the same mutants count before and after new tests.

Measured (2026-12-07), before -> after adding tests/test_mutation_contracts_quality.py and
tests/test_mutation_contracts_verify.py: definitions 7/20 -> 20/20, grounding 12/22 -> 22/22,
verify 4/16 -> 16/16 (9/16 with tests/test_mutation_contracts_text.py, issue 33's text contracts).
"""
from __future__ import annotations

import sys

from mutants_text import run_cli  # benchmarks/ is sys.path[0] when this runs

D, G, V = "generation/quality/definitions.py", "generation/quality/grounding.py", "generation/verify.py"

# module -> (its test files, [(file, old, new, what the mutant breaks)])
MUTANTS: dict[str, tuple[list[str], list[tuple[str, str, str, str]]]] = {
    "definitions": (["tests/test_quality_definitions.py", "tests/test_leak_definition.py"], [
        (D, r'r"\b(?:reference|standard|given|expected', r'r"\b(?:reference|standard|expected',
         "'given answer' not a reference"),
        (D, r'(?:answer|solution|label)s?\b", re.I)', r'(?:answer|solution|label)s?\b")',
         "'Reference answer' (capital) not a reference"),
        (D, "if match.group().lower() not in question.lower():", "if True:",
         "a reference phrase the question itself uses still leaks"),
        (D, "if letter and _letter_claim(letter).search(own):", "if False:", "'option B' never states the answer"),
        (D, 'if target.kind in ("label", "yesno"):', 'if target.kind in ("label",):',
         "a yes/no stated by the word in passing"),
        (D, "COPIED_RUN_WORDS = 5", "COPIED_RUN_WORDS = 8", "shorter quotes of the question count as statements"),
        (D, "text = _instruction_phrases().sub(_CUT, thought)", "text = thought",
         "instruction phrases not cut from the thought"),
        (D, r'_NOT_ALTERNATIVE = r"(?!\s*(?:or|/|,)\s*(?:yes|no)\b)"', '_NOT_ALTERNATIVE = r""',
         "'yes or no' read as a verdict"),
        (D, r'|^(yes|no)\s*[,.!;:]', r'|(yes|no)\s*[,.!;:]', "a 'no,' mid-thought read as a verdict"),
        (D, "listed = sum(1 for w in near if w in others) >= 2", "listed = sum(1 for w in near if w in others) >= 1",
         "one neighbouring option makes a list"),
        (D, "if not quoted and not listed:", "if not quoted:", "listing the options states the answer"),
        (D, "        quoted = any(side and", "        quoted = False and any(side and",
         "quoting the question states the answer"),
        (D, "probe.add_thought(step.thought)", "pass", "the step's own arithmetic does not support it"),
        (D, "elif step.thought and not is_source_rationale(step.thought)", "elif step.thought",
         "a quoted source rationale is a statement"),
        (D, 'mentions a {phrase.lower()!r}", index in replaced))', 'mentions a {phrase.lower()!r}", False))',
         "a replaced reference-answer step not repaired"),
        (D, "            evidence.add_results(step.observations)\n            continue", "            continue",
         "a reflection's results are not evidence"),
        (D, "q.answer, prior=evidence)", "q.answer, prior=None)", "later questions forget earlier evidence"),
        (D, "parts = [thought[:at].strip(), thought[at:].strip()] if at > 0 else [thought]", "parts = [thought]",
         "an ORR rationale quote not split off"),
        (D, 'views = [StepView("", "continue", tuple(api_outputs))] if api_outputs else []', "views = []",
         "ORR API outputs dropped"),
        (D, "question_choices(question) if choices is None else choices", "choices or ()",
         "options in the question's text not read"),
    ]),
    "grounding": (["tests/test_grounding_edges.py", "tests/test_quality_evidence_kinds.py",
                   "tests/test_quality_definitions.py"], [
        (G, "if len(norm.split()) > LONG_ANSWER_WORDS:", "if len(norm.split()) >= LONG_ANSWER_WORDS:",
         "a 6-word answer read as long"),
        (G, "LONG_ANSWER_RECALL = 0.6", "LONG_ANSWER_RECALL = 0.5", "long answers supported at half recall"),
        (G, "24.0, 60.0, 90.0", "24.0, 90.0", "60 not a constant"),
        (G, "range(0, 13)", "range(0, 12)", "12 not a constant"),
        (G, "hits * 2 >= len(words)", "hits * 2 > len(words)", "yes/no needs more than half the words"),
        (G, 'if "comparison" in self.decided:\n                return True', 'if False:\n                pass',
         "a decided comparison does not support yes/no"),
        (G, "self.known(float(part), constants=False)", "self.known(float(part))",
         "a fraction supported by small constant parts"),
        (G, 'if target.kind == "label":\n            return False', 'if False:\n            return False',
         "a bare option letter supported by text"),
        (G, " or target.norm in self.decided", "", "a decided parity does not support 'odd'"),
        (G, "0.5 * 10 ** -places if places", "1.0 * 10 ** -places if places", "rounding tolerance doubled"),
        (G, "if all(self.known(v) or any(abs(v - d) <= 1e-9 * max(1.0, abs(d)) for d in new) for v in operands):",
         "if True:", "arithmetic on unknown numbers derives"),
        (G, "if all(self.known(v) or any(abs(v - d) <= 1e-9 * max(1.0, abs(d)) for d in new) for v in operands):",
         "if all(self.known(v) for v in operands):", "a chain cannot use its own earlier results"),
        (G, "        if ok:\n", "        if True:\n", "wrong arithmetic derives"),
        (G, 'text = _TIME.sub(lambda m: "h".join(g for g in m.groups() if g), str(text))', "text = str(text)",
         "a time's digits are words of their own"),
        (G, 'return _TIME.sub(" ", str(text))', "return str(text)", "a time's digits are numbers"),
        (G, '(60.0 if match.group(2).lower().startswith("h") else 1.0)', "1.0", "hours read as minutes"),
        (G, "        if holds:\n", "        if True:\n", "a false comparison decides"),
        (G, '(int(n) % 2 == 1) == (parity == "odd")', '(int(n) % 2 == 0) == (parity == "odd")', "parity flipped"),
        (G, "for values, fact in decided_facts(thought) if all(self.known(v) for v in values)]",
         "for values, fact in decided_facts(thought)]", "facts about unknown numbers decide"),
        (G, "letter, text = LETTERS[index], _option_text(choices[index]) or LETTERS[index]",
         "letter = LETTERS[index]", "a choice's target is its letter, not its text"),
        (G, 'return bool(norm_text) and f" {norm_text} " in self._norm', "return norm_text in self._norm",
         "evidence matched inside words"),
        (G, r'norm_text = _MERIDIEM.sub(r"\1 \2", norm_text)', "pass", "'2h10pm' not '2h10 pm' when searched"),
    ]),
    "verify": (["tests/test_verify.py"], [
        (V, "lo - 1e-9 <= value <= hi + 1e-9", "lo < value < hi", "[v, v] never matches"),
        (V, "return p.split()[0] == r", "return r in p.split()", "any word decides yes/no"),
        (V, "return p.split()[0] == r", "return p.startswith(r)", "'yesterday' is yes"),
        (V, 'ranges.append((float(item["wikidata"]), float(item["wikidata"])))', "pass", "wikidata value ignored"),
        (V, "items = [items]  # a bare [lo, hi]", "pass", "bare [lo, hi] read as two values"),
        (V, 'if places == 0 and "/" not in reference_text and float(reference).is_integer():', "if False:",
         "integers compared within the tolerance"),
        (V, "rel_tol * abs(reference) + 1e-12", "10 * rel_tol * abs(reference) + 1e-12", "tolerance ten times wider"),
        (V, "    return round(predicted, places) == round(reference, places)", "    return False",
         "equal at the reference's precision not a match"),
        (V, "    if not p:\n        return False\n    if p == r:", "    if p == r:",
         "an empty normal form matches an empty reference"),
        (V, "elif _OPTION_LETTER.fullmatch(reference.strip()):", "elif False:",
         "a letter reference without choices compared as text"),
        (V, "if any(_text_match(predicted, alias, rel_tol) for alias in aliases):", "if False:",
         "InfoSeek aliases ignored"),
        (V, "        elif isinstance(item, (int, float)) and not isinstance(item, bool):\n"
            "            ranges.append((float(item), float(item)))\n", "", "a bare number in answer_eval ignored"),
        (V, 'return getattr(teacher, "kind", None) == "offline"', "return True",
         "auto grounding quarantines model teachers"),
        (V, "        if qa.verified is None:\n", "        if True:\n", "an answer already judged re-verified"),
        (V, "if qa.verified is False:", "if not qa.verified:", "an unverified answer quarantined"),
        (V, "r_num = parse_number(reference) if shape else None", "r_num = parse_number(reference)",
         "a reference with words before its number compared as a number"),
    ]),
}


def main() -> None:
    run_cli(MUTANTS, "mutants-quality-")

if __name__ == "__main__":
    sys.exit(main())
