"""The protected model's own responses to the data set's prompts (greedy, batched, resumable cache)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


def prompt_key(prompt: str, max_new_tokens: int) -> str:
    return hashlib.sha1(f"{max_new_tokens}\x00{prompt}".encode()).hexdigest()[:16]


def generate_responses(lm, prompts: list[str], cache: Path, max_new_tokens: int = 64, batch_size: int = 16) -> dict[str, dict]:
    """Return ``{key: {"prompt", "response", "ms_per_token"}}``; already cached prompts are not regenerated."""
    done: dict[str, dict] = {}
    if cache.exists():
        for ln in cache.read_text(encoding="utf-8").splitlines():
            if ln.strip():
                row = json.loads(ln)
                done[row["key"]] = row
    todo = [p for p in dict.fromkeys(prompts) if prompt_key(p, max_new_tokens) not in done]
    # similar prompt lengths in one batch waste less left padding
    todo.sort(key=lambda p: len(lm.encode_prompt(p)[0]))
    log.info("generation", extra={"cached": len(done), "todo": len(todo)})
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="generate", unit="prompt") as bar:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            for p, out in zip(chunk, lm.generate(chunk, max_new_tokens=max_new_tokens)):
                row = {"key": prompt_key(p, max_new_tokens), "prompt": p, "response": out["response"],
                       "ms_per_token": out["ms_per_token"]}
                done[row["key"]] = row
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            bar.update(len(chunk))
    return {prompt_key(p, max_new_tokens): done[prompt_key(p, max_new_tokens)] for p in prompts}
