"""Scoring: the one function behind ``tidegate text score`` and the streaming worker.

Streaming semantics: the head reads the protected model's layer-L state of each response token, in order; the
monotone score is the running max of the per-token probability; generation stops at the first token whose
monotone score reaches the calibrated threshold. ``stop_char`` is the end (exclusive char offset in the response)
of that token. Offline scoring teacher-forces the protected model over (prompt, response), which yields the
same hidden states a live generation of that response would, and then steps the head token by token.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from .sld import SLDHead

log = logging.getLogger(__name__)


@dataclass
class StreamStatus:
    """What lives outside the head for one session: running max, tokens seen, first flagged token."""

    peak: float = 0.0
    tokens: int = 0
    stop_index: int | None = None

    def update(self, p: float, threshold: float) -> bool:
        """Fold in the next token's probability; True when this token is the (first) stop."""
        self.peak = max(self.peak, float(p))
        idx = self.tokens
        self.tokens += 1
        if self.stop_index is None and self.peak >= threshold:
            self.stop_index = idx
            return True
        return False


@torch.no_grad()
def stream_scores(head: SLDHead, prompt_hidden: torch.Tensor, response_hidden: torch.Tensor) -> torch.Tensor:
    """Per-token probabilities ``[T]`` for one response, one ``step`` per token as in streaming."""
    state = head.init_state(prompt_hidden.unsqueeze(0).float(), None)
    probs = []
    for t in range(response_hidden.shape[0]):
        state, p = head.step(state, response_hidden[t:t + 1].float())
        probs.append(p)
    return torch.cat(probs) if probs else torch.zeros(0)


def score_pair(lm, head: SLDHead, card: dict, prompt: str, response: str) -> dict:
    """Score one (prompt, response): ``{"harmful_probability", "label", "stop_char", "stop_token", "n_tokens"}``."""
    Hp, Hr, enc = lm.pair_hidden(prompt, response, int(card["layer"]))
    probs = stream_scores(head, Hp, Hr)
    status = StreamStatus()
    thr = float(card["threshold"])
    for p in probs.tolist():
        status.update(p, thr)
    stop = status.stop_index
    return {"harmful_probability": float(status.peak),
            "label": "harmful" if stop is not None else "benign",
            "stop_char": int(enc.offsets[stop][1]) if stop is not None else None,
            "stop_token": stop, "n_tokens": int(Hr.shape[0])}


def score_lines(lines: Iterable[str], lm, head: SLDHead, card: dict) -> Iterator[dict]:
    """One output dict per input line (``{"id", "prompt", "response"}``); bad lines give ``{"id", "error"}``."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rid = None
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("line is not a JSON object")
            rid = row.get("id")
            prompt, response = row.get("prompt"), row.get("response")
            if not isinstance(prompt, str) or not isinstance(response, str):
                raise ValueError("'prompt' and 'response' must be strings")
            res = score_pair(lm, head, card, prompt, response)
            yield {"id": rid, "harmful_probability": res["harmful_probability"], "label": res["label"],
                   "stop_char": res["stop_char"]}
        except Exception as exc:  # a bad line must not end the run
            log.warning("unscorable line", extra={"line": n, "error": str(exc)})
            yield {"id": rid, "error": f"{type(exc).__name__}: {exc}"}
