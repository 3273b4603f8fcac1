"""Streaming Latent Dynamics (SLD) head, the Anchored Temporal Consistency (ATC) loss and the stop rule.

The head reads one layer's hidden state per response token and keeps a *bounded* recurrent state:

    state = [ memory (mem_dim) | prompt summary (proj_dim) | window of recent projected tokens (window*proj_dim)
              | window validity flags (window) ]

so its size (``state_size``) and the cost of ``step`` do not depend on how many tokens came before. The state is
a flat float32 vector so a serving worker can store it as bytes per session and batch many sessions together.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VERSION = "kelp-sld-1"
DEFAULT_HEAD_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


class SLDHead(nn.Module):
    def __init__(self, hidden_dim: int, proj_dim: int = 64, mem_dim: int = 128, window: int = 8, risk_hidden: int = 64):
        super().__init__()
        self.hidden_dim, self.proj_dim, self.mem_dim, self.window = hidden_dim, proj_dim, mem_dim, window
        # hidden states of LMs have a few huge-magnitude channels; a parameter-free norm keeps the input tame
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.proj = nn.Linear(hidden_dim, proj_dim)
        self.pool_score = nn.Linear(proj_dim, 1)
        self.init_mem = nn.Linear(proj_dim, mem_dim)
        self.cell = nn.GRUCell(2 * proj_dim, mem_dim)
        self.win_q = nn.Linear(proj_dim, proj_dim, bias=False)
        self.risk = nn.Sequential(nn.Linear(mem_dim + 3 * proj_dim, risk_hidden), nn.GELU(), nn.Linear(risk_hidden, 1))

    @property
    def state_size(self) -> int:
        return self.mem_dim + self.proj_dim + self.window * self.proj_dim + self.window

    def config(self) -> dict:
        return {"hidden_dim": self.hidden_dim, "proj_dim": self.proj_dim, "mem_dim": self.mem_dim,
                "window": self.window, "risk_hidden": self.risk[0].out_features}

    def project(self, h: Tensor) -> Tensor:
        return torch.tanh(self.proj(self.norm(h.float())))

    # ---- state -----------------------------------------------------------------------------------------
    def _split(self, state: Tensor):
        m, d, W = self.mem_dim, self.proj_dim, self.window
        mem = state[:, :m]
        prm = state[:, m:m + d]
        win = state[:, m + d:m + d + W * d].reshape(state.shape[0], W, d)
        valid = state[:, m + d + W * d:]
        return mem, prm, win, valid

    def _join(self, mem, prm, win, valid) -> Tensor:
        return torch.cat([mem, prm, win.reshape(mem.shape[0], -1), valid], dim=1)

    def init_state(self, prompt_hidden: Tensor, prompt_mask: Tensor | None = None) -> Tensor:
        """Attention-pool the prompt's hidden states ``[B, P, D]`` into the initial state ``[B, S]``."""
        x = self.project(prompt_hidden)
        if prompt_mask is None:
            prompt_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        score = self.pool_score(x).squeeze(-1).masked_fill(~prompt_mask.bool(), float("-inf"))
        pooled = (torch.softmax(score, dim=1).unsqueeze(-1) * x).sum(1)
        mem = torch.tanh(self.init_mem(pooled))
        B = x.shape[0]
        win = x.new_zeros(B, self.window, self.proj_dim)
        valid = x.new_zeros(B, self.window)
        return self._join(mem, pooled, win, valid)

    def _step_projected(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        mem, prm, win, valid = self._split(state)
        if self.window > 0:
            # attend from the current token over the recent window (only filled slots count)
            q = self.win_q(x).unsqueeze(1)
            att = (q * win).sum(-1) / self.proj_dim ** 0.5
            att = att.masked_fill(valid < 0.5, -1e4)
            w = torch.softmax(att, dim=1) * (valid > 0.5).any(1, keepdim=True).float()
            ctx = (w.unsqueeze(-1) * win).sum(1)
            win = torch.cat([win[:, 1:], x.unsqueeze(1)], dim=1)
            valid = torch.cat([valid[:, 1:], valid.new_ones(valid.shape[0], 1)], dim=1)
        else:
            ctx = torch.zeros_like(x)
        mem = self.cell(torch.cat([x, ctx], dim=1), mem)
        logit = self.risk(torch.cat([mem, prm, x, ctx], dim=1)).squeeze(-1)
        return self._join(mem, prm, win, valid), logit

    def step_logits(self, state: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self._step_projected(state, self.project(h))

    def step(self, state: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """One response token: hidden state ``[B, D]`` -> (new state ``[B, S]``, harm probability ``[B]``)."""
        new, logit = self.step_logits(state, h)
        return new, torch.sigmoid(logit)

    def scan_logits(self, state: Tensor, H: Tensor) -> tuple[Tensor, Tensor]:
        X = self.project(H)  # projecting all tokens at once is the cheap part of training
        logits = []
        for t in range(X.shape[1]):
            state, lg = self._step_projected(state, X[:, t])
            logits.append(lg)
        out = torch.stack(logits, dim=1) if logits else X.new_zeros(X.shape[0], 0)
        return state, out

    def scan(self, state: Tensor, H: Tensor) -> tuple[Tensor, Tensor]:
        """Many tokens ``[B, T, D]`` -> (state after the last token, probabilities ``[B, T]``); same as T steps."""
        state, logits = self.scan_logits(state, H)
        return state, torch.sigmoid(logits)


# ---- losses -----------------------------------------------------------------------------------------------
def token_targets_atc(lengths: Tensor, labels: Tensor, onsets: Tensor, T: int, anchor_k: int = 4,
                      dense_onset: bool = True) -> tuple[Tensor, Tensor]:
    """Per-token targets and weights for the anchored CE term.

    Model-grounded rows (onset < 0): the first ``anchor_k`` tokens are benign (0) and the last ``anchor_k``
    tokens carry the response label. Exact-onset rows (onset >= 0, harmful or their benign controls with
    onset = length): with ``dense_onset`` every token is a target, 0 before the onset and 1 from it on;
    otherwise only the anchors are used, with the first anchors clipped to the tokens before the onset.
    """
    B = lengths.shape[0]
    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    n = lengths.unsqueeze(1)
    y = labels.float().unsqueeze(1)
    valid = pos < n
    first = pos < anchor_k
    last = pos >= (n - anchor_k)
    target = torch.zeros(B, T)
    weight = torch.zeros(B, T)
    grounded = (onsets < 0).unsqueeze(1)
    # model-grounded
    target = torch.where(grounded & last, y.expand(B, T), target)
    weight = torch.where(grounded & (first | last) & valid, torch.ones_like(weight), weight)
    # exact onset
    on = onsets.clamp(min=0).unsqueeze(1)
    after = pos >= on
    target = torch.where(~grounded & after, torch.ones_like(target), target)
    if dense_onset:
        w_on = valid
    else:
        w_on = valid & ((first & ~after) | (last & (after | (y < 0.5))))
    weight = torch.where(~grounded & w_on, torch.ones_like(weight), weight)
    return target, weight


def atc_loss(logits: Tensor, mask: Tensor, target: Tensor, weight: Tensor,
             lam_smooth: float = 0.5, lam_mono: float = 0.5) -> tuple[Tensor, dict]:
    """Anchored Temporal Consistency: weighted token CE + λs·mean|p(t+1)−p(t)| + λm·mean ReLU(p(t)−p(t+1)).

    ``mask`` marks real (non-padding) tokens; the temporal terms average over pairs of consecutive real tokens.
    """
    mask = mask.float()
    w = weight * mask
    ce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum().clamp(min=1)
    p = torch.sigmoid(logits)
    pair = mask[:, 1:] * mask[:, :-1]
    npair = pair.sum().clamp(min=1)
    diff = p[:, 1:] - p[:, :-1]
    smooth = (diff.abs() * pair).sum() / npair
    mono = (F.relu(-diff) * pair).sum() / npair
    total = ce + lam_smooth * smooth + lam_mono * mono
    return total, {"ce": float(ce.detach()), "smooth": float(smooth.detach()), "mono": float(mono.detach())}


def dense_ce_loss(logits: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, dict]:
    """The CE-only recipe: every token of a response carries the response label."""
    target = labels.float().unsqueeze(1).expand_as(logits)
    m = mask.float()
    ce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * m).sum() / m.sum().clamp(min=1)
    return ce, {"ce": float(ce.detach())}


# ---- stop rule --------------------------------------------------------------------------------------------
def running_max(p: Tensor) -> Tensor:
    """Monotone score: the highest probability seen so far along the last axis."""
    return torch.cummax(p, dim=-1).values


def first_flag(p, threshold: float) -> int | None:
    """Index of the first token whose running max reaches ``threshold`` (None if it never does)."""
    p = torch.as_tensor(p, dtype=torch.float32)
    hit = (p >= threshold).nonzero()
    return int(hit[0]) if len(hit) else None


# ---- checkpoints ------------------------------------------------------------------------------------------
def save_head(head: SLDHead, card: dict, out_dir: str | Path) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out / "model.safetensors"))
    full = {"version": VERSION, "state_size": head.state_size, "hidden_dim": head.hidden_dim,
            "config": head.config(), **card}
    (out / "model_card.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out


def load_head(path: str | Path | None = None) -> tuple[SLDHead, dict]:
    """Load a head folder (``model.safetensors`` + ``model_card.json``); default the committed head."""
    from safetensors.torch import load_file

    root = Path(path) if path is not None else DEFAULT_HEAD_DIR
    card = json.loads((root / "model_card.json").read_text())
    head = SLDHead(**card["config"])
    head.load_state_dict(load_file(str(root / "model.safetensors")))
    head.eval()
    if head.state_size != card["state_size"]:
        raise ValueError(f"state size mismatch: card {card['state_size']} vs head {head.state_size}")
    return head, card
