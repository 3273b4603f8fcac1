"""``GuardedGenerator``: HF ``generate()`` with a layer tap, chunked streaming to Tidegate, and a stop switch."""
from __future__ import annotations

import inspect
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import torch
from google.protobuf.timestamp_pb2 import Timestamp

from tidegate.plugin.transports import Transport
from tidegate.v1 import events_pb2 as pb


@dataclass
class GuardedResult:
    session_id: str
    text: str
    token_ids: list[int]
    stopped: bool                       # a verdict or action stopped the generation
    stop_reason: str = ""
    verdicts: list[pb.Verdict] = field(default_factory=list)
    actions: list[pb.Action] = field(default_factory=list)


def _latents(hidden: torch.Tensor, layer: int) -> pb.Latents:
    x = hidden.detach().to(torch.float16).cpu().numpy()
    return pb.Latents(layer=layer, dim=x.shape[-1], dtype=pb.Latents.FLOAT16, data=np.ascontiguousarray(x).tobytes())


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class GuardedGenerator:
    """Taps decoder block ``layer`` (1-based, the ``output_hidden_states[layer]`` convention) while ``generate()``
    runs, sends every ``chunk_tokens`` new tokens with their hidden states, and stops when told to.

    A token's layer-L state exists once it is fed back into the model (the next decode step), so each chunk carries the
    tokens whose states are known; after generation ends, one extra step computes the last token's state.
    ``wait_for_verdicts=True`` waits for each chunk's verdict before decoding on (deterministic stop points, slower);
    the default checks for verdicts without blocking and stops at the next token after a stop arrives.
    """

    def __init__(self, model, tokenizer, transport: Transport, *, layer: int, model_id: str, tenant_id: str,
                 chunk_tokens: int = 16, wait_for_verdicts: bool = False, verdict_timeout_s: float = 30.0,
                 surface: str = "chat"):
        self.model, self.tokenizer, self.transport = model.eval(), tokenizer, transport
        self.layer, self.model_id, self.tenant_id, self.surface = layer, model_id, tenant_id, surface
        self.chunk_tokens = chunk_tokens
        self.wait_for_verdicts = wait_for_verdicts
        self.verdict_timeout_s = verdict_timeout_s

    def _prompt_ids(self, prompt: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                      add_generation_prompt=True, tokenize=False)
        else:
            text = f"User: {prompt}\nAssistant: "
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def generate(self, prompt: str, *, session_id: str | None = None, max_new_tokens: int = 128,
                 **generate_kwargs) -> GuardedResult:
        from transformers import StoppingCriteria, StoppingCriteriaList

        session_id = session_id or uuid.uuid4().hex
        result = GuardedResult(session_id, "", [], False)
        ids = self._prompt_ids(prompt)
        taps: list[torch.Tensor] = []        # per forward call: the tapped block's output [1, n, D]
        state = {"seq": 0, "sent": 0, "text_chars": 0}

        def hook(_module, _inputs, output):
            taps.append((output[0] if isinstance(output, tuple) else output)[0].detach())

        def chunk(token_ids: list[int], hidden: torch.Tensor | None, final: bool = False, **extra) -> None:
            # text of exactly these tokens, by difference of prefix decodes (robust to multi-token characters)
            so_far = self.tokenizer.decode(result.token_ids[: state["sent"] + len(token_ids)], skip_special_tokens=True)
            text = so_far[state["text_chars"]:]
            state["text_chars"] = len(so_far)
            msg = pb.TokenChunk(tenant_id=self.tenant_id, session_id=session_id, model_id=self.model_id,
                                seq=state["seq"], token_ids=token_ids, text=text, final=final, surface=self.surface,
                                sent_at=_now(), **extra)
            if hidden is not None and len(token_ids):
                msg.latents.CopyFrom(_latents(hidden, self.layer))
            self.transport.send(msg)
            state["seq"] += 1
            state["sent"] += len(token_ids)
            self._collect(result, wait=self.wait_for_verdicts, expected=state["seq"])

        def flush_ready(final: bool = False) -> None:
            # taps[0] is the prefill; taps[k] (k >= 1) is the state of generated token k-1
            ready = len(taps) - 1
            while ready - state["sent"] >= self.chunk_tokens or (final and ready > state["sent"]):
                n = min(self.chunk_tokens, ready - state["sent"])
                start = state["sent"]
                hidden = torch.cat([taps[1 + i][-1:] for i in range(start, start + n)])
                chunk(result.token_ids[start: start + n], hidden)
                if result.stopped:
                    return

        class Guard(StoppingCriteria):
            def __call__(inner, input_ids, scores, **kwargs):  # noqa: N805 - StoppingCriteria's signature
                result.token_ids = input_ids[0, len(ids):].tolist()
                if len(taps) == 1 and state["seq"] == 0:  # prefill done: open the session with the prompt
                    chunk([], None, prompt=prompt, prompt_latents=_latents(taps[0], self.layer))
                flush_ready()
                if not result.stopped:
                    self._collect(result, wait=False)
                return torch.tensor([result.stopped], device=input_ids.device)

        self.transport.open(session_id)
        block = self.model.model.layers[self.layer - 1]
        handle = block.register_forward_hook(hook)
        try:
            out = self.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      stopping_criteria=StoppingCriteriaList([Guard()]),
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                                      return_dict_in_generate=True, **generate_kwargs)
            result.token_ids = out.sequences[0, len(ids):].tolist()
            eos = self.tokenizer.eos_token_id
            if eos in result.token_ids:
                result.token_ids = result.token_ids[: result.token_ids.index(eos)]
            if not result.stopped and len(taps) - 1 < len(result.token_ids):
                # the last token was never fed back: one extra step gives its state
                # transformers >= 5.x names the argument ``cache``; older releases ``past_key_values``
                name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
                self.model(input_ids=out.sequences[:, -1:], use_cache=True, **{name: out.past_key_values})
            taps[:] = taps[: 1 + len(result.token_ids)]
            if not result.stopped:
                flush_ready(final=True)
                chunk([], None, final=True)
                self._collect(result, wait=True, expected=state["seq"])
        finally:
            handle.remove()
            self.transport.close()
        result.text = self.tokenizer.decode(result.token_ids, skip_special_tokens=True)
        return result

    def _collect(self, result: GuardedResult, wait: bool, expected: int = 0) -> None:
        """Take whatever verdicts/actions arrived; with ``wait``, until ``expected`` verdicts are in (or time-out)."""
        deadline = time.monotonic() + (self.verdict_timeout_s if wait else 0)
        while True:
            for item in self.transport.poll(timeout=0.05 if wait else 0.0):
                if isinstance(item, pb.Verdict):
                    result.verdicts.append(item)
                    if item.HasField("stream") and item.stream.stop and not result.stopped:
                        result.stopped, result.stop_reason = True, (
                            f"verdict {item.verdict_id}: risk {item.risk:.2f} at token {item.stream.first_flag_token}")
                elif isinstance(item, pb.Action) and item.action == pb.STOP_GENERATION and not result.stopped:
                    result.actions.append(item)
                    result.stopped, result.stop_reason = True, f"action {item.action_id}: {item.reason}"
            if not wait or len(result.verdicts) >= expected or time.monotonic() > deadline:
                return
