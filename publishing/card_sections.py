"""The parts of the dataset card that are judgement written down, each from a measured number:
which configs the copy-paste snippets load, who wrote the rows ("how it was made"), the limitations and
intended use, the citations, and the run's facts kept beside the data.

Why a run-facts file: the card's "Generation run" section (quarantine counts, time) is known only to the
run that wrote the rows. `write_card(run_stats=...)` (the run's end) keeps those facts in
`RUN_FACTS_FILENAME` inside the dataset folder (a dot-file: `mmat push` never uploads it), and every
later `write_card` without `run_stats` (`mmat push`, `mmat card --write`) reads them back, so the card a
run wrote, the card a push uploads and the card a re-render writes are the same text.

Every name these sections print (a source, a subset, a model, a backend) comes from the rows, which are
untrusted: `code` and `md_text` make it inert Markdown.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from mmat_1m import CONFIGS, FORMATS
from publishing.examples import md_text

RUN_FACTS_FILENAME = ".mmat-run-facts.json"
OFFLINE_MODEL = "offline-annotations"  # `generation.teachers.offline.MODEL_NAME`: no model wrote the rows
# Subsets whose content a user should know about before training or showing it.
SENSITIVE_SUBSETS = {
    "hateful_memes": "memes made to be hateful or offensive (The Cauldron's `hateful_memes`, from Facebook's "
                     "Hateful Memes): offensive text and images about protected groups",
}
_SAFE_NAME = re.compile(r"^[\w.:+/@ -]{1,120}$")


# ------------------------------------------------------------------------------------ escaping
def code(name: Any) -> str:
    """A name from the rows as an inline code span when it is plain (letters, digits, `._-:/+@`), else as
    escaped text: a backtick, `<` or `|` in a hostile name can close neither the span nor the table cell."""
    text = str(name)
    return f"`{text}`" if _SAFE_NAME.match(text) else md_text(text, 200)


# ------------------------------------------------------------------------------------ run facts
def write_run_facts(root: Path, facts: dict) -> None:
    path = Path(root) / RUN_FACTS_FILENAME
    from generation.atomic import write_atomic

    write_atomic(path, json.dumps(facts, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def read_run_facts(root: Path) -> dict:
    """The facts the last run kept beside the data ({} when none, or when the file is not a JSON object)."""
    try:
        data = json.loads((Path(root) / RUN_FACTS_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------ snippets
def snippet_configs(present: list[str]) -> tuple[Optional[str], Optional[str]]:
    """(the whole-dataset config, a per-source config) the card's `load_dataset` lines use: only configs
    this version has (`orr` before `rr`; the first per-source config, RR first)."""
    whole = next((f for f in ("orr", "rr") if f in present), None)
    per_source = next((c.name for fmt in FORMATS for c in CONFIGS
                       if c.source and c.format == fmt and c.name in present), None)
    return whole, per_source


# ------------------------------------------------------------------------------------ who wrote it
def teacher_summary(stats: Any) -> dict:
    """Who wrote the rows: dialogues by the offline teacher and by models, and the models' modes."""
    models: Counter = stats.teacher_models
    offline = models.get(OFFLINE_MODEL, 0)
    by_model = [(m, n) for m, n in models.most_common() if m != OFFLINE_MODEL]
    modes = {m or "none": n for m, n in stats.teacher_modes.most_common()}
    return {"offline": offline, "models": by_model, "model_dialogues": sum(n for _, n in by_model),
            "modes": modes, "dialogues": stats.dialogues,
            "unrecorded": max(0, stats.dialogues - sum(models.values()))}


def teacher_sentence(summary: dict) -> str:
    """Stage 2 of "how it was made", naming what wrote these rows."""
    parts = []
    if summary["models"]:
        names = ", ".join(f"{code(m)} ({n:,} dialogues)" for m, n in summary["models"])
        parts.append(f"A teacher model ({names}) reasons step by step without being shown how to use the "
                     f"reference answer")
    if summary["offline"]:
        parts.append(f"the offline teacher ({code(OFFLINE_MODEL)}, {summary['offline']:,} dialogues) wrote "
                     f"{'the other rationales' if summary['models'] else 'every rationale'}: no model, deterministic "
                     f"steps that read the source's annotations to choose where to look and state only what "
                     f"the operator results support")
    if not parts:
        return "The rows do not record which teacher wrote them."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


# ------------------------------------------------------------------------------------ limitations
def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def limitations(stats: Any, summary: dict) -> dict:
    """The measured numbers behind "Limitations and intended use" (see the template)."""
    dialogues = stats.dialogues
    by_kind: dict[str, Counter] = {}
    for (kind, state), n in stats.grounded.items():
        by_kind.setdefault(kind, Counter())[state] += n
    grounded_rows = []
    for kind in sorted(by_kind, key=lambda k: (k == "", k)):
        c = by_kind[kind]
        total = sum(c.values())
        grounded_rows.append({"kind": code(kind) if kind else "not recorded", "dialogues": total, "yes": c["yes"], "no": c["no"],
                              "unknown": c["unknown"], "share": _share(c["yes"], c["yes"] + c["no"])})
    yes = sum(c["yes"] for c in by_kind.values())
    no = sum(c["no"] for c in by_kind.values())
    captions = stats.operator_backends.get("image_caption", Counter())
    template = captions.get("template", 0)
    caption_total = sum(captions.values())
    rr = stats.formats["rr"] if "rr" in stats.formats else next(iter(stats.formats.values()))
    reflected = sum(n for k, n in rr.reflections.items() if k not in ("", "none"))
    staged = rr.origins.get("staged", 0)
    sensitive = [{"subset": code(sub), "what": SENSITIVE_SUBSETS[sub], "dialogues": n}
                 for source, subs in sorted(stats.subsets.items()) for sub, n in sorted(subs.items())
                 if sub in SENSITIVE_SUBSETS]
    return {
        "grounded_rows": grounded_rows, "grounded_yes": yes, "grounded_no": no,
        "grounded_share": _share(yes, yes + no), "not_grounded_share": _share(no, yes + no),
        "grounded_recorded": yes + no > 0,
        "template_captions": template, "caption_results": caption_total,
        "template_share": _share(template, caption_total),
        "offline_share": _share(summary["offline"], dialogues),
        "model_share": _share(summary["model_dialogues"], dialogues),
        "reflected": reflected, "staged": staged, "staged_share": _share(staged, reflected),
        "sensitive": sensitive,
    }


# ------------------------------------------------------------------------------------ citations
ENGINE_BIBTEX = """@software{mmat1m_engine,
  title   = {mmat-1m: an open reimplementation of the MMAT-1M data engine},
  version = {VERSION},
  note    = {The rows' engine_version column names the version that wrote each row},
  year    = {2026}
}"""

PAPER_BIBTEX = """@inproceedings{gao2025mmat1m,
  title     = {MMAT-1M: A Large Reasoning Dataset for Multimodal Agent Tuning},
  author    = {Gao, Tianhong and Fu, Yannian and Wu, Weiqun and Yue, Haixiao and Liu, Shanshan and Zhang, Gang},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2025},
  eprint    = {2507.21924},
  archivePrefix = {arXiv}
}"""

SOURCE_BIBTEX = {
    "visual_cot": """@inproceedings{shao2024visualcot,
  title     = {Visual CoT: Advancing Multi-Modal Language Models with a Comprehensive Dataset and Benchmark for Chain-of-Thought Reasoning},
  author    = {Shao, Hao and Qian, Shengju and Xiao, Han and Song, Guanglu and Zong, Zhuofan and Wang, Letian and Liu, Yu and Li, Hongsheng},
  booktitle = {Advances in Neural Information Processing Systems (Datasets and Benchmarks Track)},
  year      = {2024},
  eprint    = {2403.16999},
  archivePrefix = {arXiv}
}""",
    "llava_cot": """@article{xu2024llavacot,
  title   = {LLaVA-CoT: Let Vision Language Models Reason Step-by-Step},
  author  = {Xu, Guowei and Jin, Peng and Li, Hao and Song, Yibing and Sun, Lichao and Yuan, Li},
  journal = {arXiv preprint arXiv:2411.10440},
  year    = {2024}
}""",
    "cauldron": """@article{laurencon2024matters,
  title   = {What matters when building vision-language models?},
  author  = {Lauren{\\c{c}}on, Hugo and Tronchon, L{\\'e}o and Cord, Matthieu and Sanh, Victor},
  journal = {arXiv preprint arXiv:2405.02246},
  year    = {2024}
}""",
    "tabmwp": """@inproceedings{lu2023dynamic,
  title     = {Dynamic Prompt Learning via Policy Gradient for Semi-structured Mathematical Reasoning},
  author    = {Lu, Pan and Qiu, Liang and Chang, Kai-Wei and Wu, Ying Nian and Zhu, Song-Chun and Rajpurohit, Tanmay and Clark, Peter and Kalyan, Ashwin},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2023}
}""",
    "infoseek": """@inproceedings{chen2023infoseek,
  title     = {Can Pre-trained Vision and Language Models Answer Visual Information-Seeking Questions?},
  author    = {Chen, Yang and Hu, Hexiang and Luan, Yi and Sun, Haitian and Changpinyo, Soravit and Ritter, Alan and Chang, Ming-Wei},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year      = {2023}
}""",
}


def citations(present_sources: list[str], engine_version: str) -> list[tuple[str, str]]:
    """(what, BibTeX) for the paper, each upstream source present, and this engine."""
    from publishing.source_licenses import SOURCE_LICENSES

    out = [("The MMAT-1M paper", PAPER_BIBTEX)]
    out += [(f"{SOURCE_LICENSES[s].name} (source `{s}`)", SOURCE_BIBTEX[s]) for s in present_sources if s in SOURCE_BIBTEX]
    out.append(("This data engine", ENGINE_BIBTEX.replace("VERSION", engine_version)))
    return out
