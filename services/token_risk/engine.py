"""The token-risk engine: advance many sessions' SLD state over a batch of chunks, produce one verdict per chunk.

The same code serves the Kafka worker (a polled batch) and the gRPC stream (a batch of one). Per batch:
1. load every touched session's state from Redis in one pipeline;
2. validate each chunk and turn it into hidden states: carried latents (latent mode) or the protected model run on the
   new tokens with the session's bounded context window (text mode);
3. step the head over all sessions' tokens at once ([sessions, tokens, width], padded), one step per token position;
4. fold the probabilities into each session's monotone score and first flagged token, build verdicts;
5. hand back the verdicts and the state writes. The caller makes the verdicts durable first and then calls
   ``commit_states`` (compare-and-set on ``last_seq``), so a crash in between replays the chunk with the old state
   and reproduces the same verdict (same deterministic id) instead of losing it.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from google.protobuf.timestamp_pb2 import Timestamp

from tidegate.services.token_risk.config import TokenRiskSettings
from tidegate.services.token_risk.sessions import SessionState, SessionStore
from tidegate.shared.errors import InvalidArgument, ResourceExhausted
from tidegate.v1 import events_pb2 as pb

log = logging.getLogger(__name__)

_DTYPES = {pb.Latents.FLOAT32: torch.float32, pb.Latents.FLOAT16: torch.float16, pb.Latents.BFLOAT16: torch.bfloat16}
_ITEMSIZE = {pb.Latents.FLOAT32: 4, pb.Latents.FLOAT16: 2, pb.Latents.BFLOAT16: 2}


def verdict_id(tenant_id: str, session_id: str, seq: int, model_version: str) -> str:
    return hashlib.sha256(f"{tenant_id}\x1f{session_id}\x1f{seq}\x1f{model_version}".encode()).hexdigest()[:32]


def latents_tensor(latents: pb.Latents, expected_layer: int, expected_dim: int, max_tokens: int) -> torch.Tensor:
    """Decode carried hidden states to float32 ``[n, dim]``; every mismatch is an ``InvalidArgument``."""
    if latents.dtype not in _DTYPES:
        raise InvalidArgument(f"unsupported latents dtype {pb.Latents.DType.Name(latents.dtype)}; "
                              "use FLOAT32, FLOAT16 or BFLOAT16")
    if latents.layer != expected_layer:
        raise InvalidArgument(f"latents come from layer {latents.layer}; this head reads layer {expected_layer}")
    if latents.dim != expected_dim:
        raise InvalidArgument(f"latents have width {latents.dim}; this head expects {expected_dim}")
    row = expected_dim * _ITEMSIZE[latents.dtype]
    if len(latents.data) % row:
        raise InvalidArgument(f"latents hold {len(latents.data)} bytes, not a whole number of {row}-byte rows")
    n = len(latents.data) // row
    if n > max_tokens:
        raise ResourceExhausted(f"latents carry {n} token rows; the limit is {max_tokens}")
    if n == 0:
        return torch.zeros(0, expected_dim)
    x = torch.frombuffer(bytearray(latents.data), dtype=_DTYPES[latents.dtype]).reshape(n, expected_dim).float()
    if not torch.isfinite(x).all():
        raise InvalidArgument("latents contain NaN or infinite values")
    return x


@dataclass
class Outcome:
    """What one chunk produced: a verdict, or a duplicate to skip, or a rejection (error verdict + dead letter)."""
    chunk: pb.TokenChunk
    verdict: pb.Verdict | None = None
    duplicate: bool = False
    rejected: str | None = None
    rejected_kind: str = "validation"


@dataclass
class _Session:
    tenant_id: str
    session_id: str
    loaded: SessionState
    state: SessionState
    chunks: list[pb.TokenChunk] = field(default_factory=list)   # accepted, in seq order
    hidden: list[torch.Tensor] = field(default_factory=list)    # per accepted chunk: [n, D]
    notes: dict[int, str] = field(default_factory=dict)         # seq -> warning for the verdict (gaps)


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    writes: list[tuple[str, str, int, SessionState]]


class RiskEngine:
    def __init__(self, head, card: dict, store: SessionStore, settings: TokenRiskSettings, protected_model=None,
                 tokenizer=None):
        self.head = head.eval()
        self.card = card
        self.store = store
        self.settings = settings
        self.layer = int(card["layer"])
        self.dim = int(card["hidden_dim"])
        self.threshold = float(card["threshold"])
        self.model_ref = pb.ModelRef(name="kelp-sld", version=str(card.get("version", "unknown")))
        self.protected_model = protected_model  # text mode, loaded lazily
        self.tokenizer = tokenizer or (protected_model.tokenizer if protected_model is not None else None)

    # ---- input -> hidden states ------------------------------------------------------------------------------
    def _lm(self):
        if self.protected_model is None:
            if not self.settings.text_mode:
                raise InvalidArgument("chunk carries no latents and text mode is disabled on this worker")
            from tidegate.services.token_risk.kelp.lm import load_protected_model
            self.protected_model = load_protected_model(self.settings.protected_model)
            self.tokenizer = self.protected_model.tokenizer
        return self.protected_model

    def _check_chunk(self, chunk: pb.TokenChunk) -> None:
        if chunk.model_id not in self.settings.model_ids:
            raise InvalidArgument(f"unknown model_id {chunk.model_id!r}; this worker serves "
                                  f"{', '.join(self.settings.model_ids)}")
        if len(chunk.token_ids) > self.settings.max_chunk_tokens:
            raise ResourceExhausted(f"chunk has {len(chunk.token_ids)} tokens; the limit is "
                                    f"{self.settings.max_chunk_tokens}")

    def _prompt_hidden(self, chunk: pb.TokenChunk, session: _Session) -> torch.Tensor:
        if chunk.HasField("prompt_latents"):
            return latents_tensor(chunk.prompt_latents, self.layer, self.dim, self.settings.max_prompt_tokens)
        if chunk.HasField("latents"):
            raise InvalidArgument("latent-mode seq 0 needs prompt_latents (the templated prompt's hidden states)")
        lm = self._lm()
        ids, _ = lm.encode_prompt(chunk.prompt)
        session.state.context = np.asarray(ids, np.uint32)
        return lm.hidden_states(torch.tensor([ids]), None, [self.layer])[self.layer][0].float()

    def _response_hidden(self, chunk: pb.TokenChunk, session: _Session) -> torch.Tensor:
        if chunk.HasField("latents"):
            h = latents_tensor(chunk.latents, self.layer, self.dim, self.settings.max_chunk_tokens)
            if chunk.token_ids and h.shape[0] != len(chunk.token_ids):
                raise InvalidArgument(f"latents do not match the chunk: {len(chunk.token_ids)} token ids but "
                                      f"{h.shape[0]} rows of hidden states")
            return h
        if not chunk.token_ids and not chunk.text:  # e.g. a prompt-only seq 0 or an empty final chunk
            return torch.zeros(0, self.dim)
        lm = self._lm()
        new_ids = list(chunk.token_ids) or lm.tokenizer(chunk.text, add_special_tokens=False)["input_ids"]
        if not new_ids:
            return torch.zeros(0, self.dim)
        context = session.state.context.tolist()[-self.settings.context_tokens:]
        hidden = lm.hidden_states(torch.tensor([context + new_ids]), None, [self.layer])[self.layer][0]
        session.state.context = np.asarray((context + new_ids)[-self.settings.context_tokens:], np.uint32)
        return hidden[-len(new_ids):].float()

    # ---- the batch ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def process(self, chunks: list[pb.TokenChunk]) -> BatchResult:
        started = time.perf_counter()
        outcomes: dict[int, Outcome] = {id(c): Outcome(c) for c in chunks}
        by_session: dict[tuple[str, str], list[pb.TokenChunk]] = {}
        for chunk in chunks:
            by_session.setdefault((chunk.tenant_id, chunk.session_id), []).append(chunk)
        ids = list(by_session)
        loaded = self.store.load_many(ids)
        sessions: list[_Session] = []
        inits: list[tuple[_Session, torch.Tensor]] = []
        for (tenant_id, session_id), state in zip(ids, loaded):
            s = _Session(tenant_id, session_id, state, _copy(state))
            # Kafka keeps a session's order; sorting also repairs reordering within one batch (the gRPC path).
            for chunk in sorted(by_session[(tenant_id, session_id)], key=lambda c: c.seq):
                out = outcomes[id(chunk)]
                if chunk.seq <= s.state.last_seq or s.state.finished:
                    out.duplicate = True  # redelivery: its verdict was already produced
                    continue
                try:
                    self._check_chunk(chunk)
                    prompt_h = None
                    if chunk.seq == 0:
                        prompt_h = self._prompt_hidden(chunk, s)
                    elif s.state.head_state is None and not any(x is s for x, _ in inits):
                        s.notes[chunk.seq] = "session state missing (expired, or seq 0 never arrived); " \
                                             "scored without the prompt"
                        prompt_h = torch.zeros(1, self.dim)
                    h = self._response_hidden(chunk, s)
                except (InvalidArgument, ResourceExhausted) as exc:
                    out.rejected = str(exc)
                    out.rejected_kind = "validation"
                    continue
                if prompt_h is not None:
                    inits.append((s, prompt_h))
                if chunk.seq != s.state.last_seq + 1:  # missing chunks: score on, but say so
                    s.notes.setdefault(chunk.seq, f"sequence gap: expected seq {s.state.last_seq + 1}, got {chunk.seq}")
                s.state.last_seq = chunk.seq
                s.chunks.append(chunk)
                s.hidden.append(h)
            if s.chunks:
                sessions.append(s)

        if inits:
            self._init_states(inits)
        if sessions:
            probs = self._step_all(sessions)
            for s, p in zip(sessions, probs):
                self._fold(s, p, outcomes, started)
        writes = [(s.tenant_id, s.session_id, s.loaded.last_seq, s.state) for s in sessions]
        for out in outcomes.values():
            if out.rejected is not None:
                out.verdict = self._error_verdict(out.chunk, out.rejected, started)
        return BatchResult([outcomes[id(c)] for c in chunks], writes)

    def commit_states(self, result: BatchResult) -> int:
        """Write the batch's session states (compare-and-set); returns how many lost the race to another replica."""
        won = self.store.save_many(result.writes)
        lost = won.count(False)
        if lost:
            log.warning("session state already advanced by another replica", extra={"sessions": lost})
        return lost

    def _init_states(self, inits: list[tuple[_Session, torch.Tensor]]) -> None:
        P = max(h.shape[0] for _, h in inits) or 1
        H = torch.zeros(len(inits), P, self.dim)
        mask = torch.zeros(len(inits), P, dtype=torch.bool)
        for i, (_, h) in enumerate(inits):
            if h.shape[0] == 0:
                h = torch.zeros(1, self.dim)
            H[i, : h.shape[0]] = h
            mask[i, : h.shape[0]] = True
        states = self.head.init_state(H, mask)
        for (s, _), st in zip(inits, states):
            s.state.head_state = st.numpy().copy()

    def _step_all(self, sessions: list[_Session]) -> list[torch.Tensor]:
        """One batched head step per token position across all sessions; padded rows keep their state."""
        flat = [torch.cat(s.hidden) if s.hidden else torch.zeros(0, self.dim) for s in sessions]
        lengths = torch.tensor([f.shape[0] for f in flat])
        T = int(lengths.max())
        H = torch.zeros(len(sessions), T, self.dim)
        for i, f in enumerate(flat):
            H[i, : f.shape[0]] = f
        state = torch.from_numpy(np.stack([s.state.head_state for s in sessions]))
        probs = torch.zeros(len(sessions), T)
        for t in range(T):
            new_state, p = self.head.step(state, H[:, t])
            active = (t < lengths).unsqueeze(1)
            state = torch.where(active, new_state, state)
            probs[:, t] = p
        for i, s in enumerate(sessions):
            s.state.head_state = state[i].numpy().copy()
        return [probs[i, : int(lengths[i])] for i in range(len(sessions))]

    def _fold(self, s: _Session, probs: torch.Tensor, outcomes: dict[int, Outcome], started: float) -> None:
        at = 0
        st = s.state
        for chunk, h in zip(s.chunks, s.hidden):
            n = h.shape[0]
            chunk_probs = probs[at: at + n].tolist()
            at += n
            for i, p in enumerate(chunk_probs):
                st.max_risk = max(st.max_risk, p)
                if st.first_flag_token < 0 and st.max_risk >= self.threshold:
                    st.first_flag_token = st.tokens_seen + i
                    st.first_flag_char = st.chars_seen + self._chars_through(chunk, i)
            st.tokens_seen += n
            st.chars_seen += len(chunk.text)
            if chunk.final:
                st.finished = True
                st.head_state, st.context = None, np.zeros(0, np.uint32)
            outcomes[id(chunk)].verdict = self._verdict(s, chunk, chunk_probs[-1] if chunk_probs else 0.0, started)

    def _chars_through(self, chunk: pb.TokenChunk, i: int) -> int:
        """Characters of the chunk's text up to the end of its token ``i`` (the whole chunk if unknown)."""
        if self.tokenizer is None or len(chunk.token_ids) <= i:
            return len(chunk.text)
        return min(len(chunk.text), len(self.tokenizer.decode(list(chunk.token_ids[: i + 1]), skip_special_tokens=True)))

    def _subject(self, chunk: pb.TokenChunk) -> pb.Subject:
        return pb.Subject(kind=pb.Subject.GENERATION, id=chunk.session_id, tenant_id=chunk.tenant_id,
                          session_id=chunk.session_id, surface=chunk.surface)

    def _stamp(self, verdict: pb.Verdict, chunk: pb.TokenChunk, started: float) -> pb.Verdict:
        now = Timestamp()
        now.GetCurrentTime()
        verdict.created_at.CopyFrom(now)
        if chunk.HasField("sent_at"):
            verdict.latency_ms = max(0.0, (now.ToNanoseconds() - chunk.sent_at.ToNanoseconds()) / 1e6)
        else:
            verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict

    def _verdict(self, s: _Session, chunk: pb.TokenChunk, current: float, started: float) -> pb.Verdict:
        st = s.state
        flagged = st.first_flag_token >= 0
        verdict = pb.Verdict(
            verdict_id=verdict_id(chunk.tenant_id, chunk.session_id, chunk.seq, self.model_ref.version),
            subject=self._subject(chunk), model=self.model_ref, risk=st.max_risk,
            label="harmful" if flagged else "benign",
            scores=[pb.CategoryScore(category="harmful", score=st.max_risk)],
            stream=pb.StreamEvidence(seq=chunk.seq, tokens_seen=st.tokens_seen, current_risk=current,
                                     max_risk=st.max_risk, first_flag_token=st.first_flag_token,
                                     first_flag_char=st.first_flag_char, stop=flagged),
            error=s.notes.get(chunk.seq, ""))
        return self._stamp(verdict, chunk, started)

    def _error_verdict(self, chunk: pb.TokenChunk, reason: str, started: float) -> pb.Verdict:
        verdict = pb.Verdict(
            verdict_id=verdict_id(chunk.tenant_id, chunk.session_id, chunk.seq, self.model_ref.version),
            subject=self._subject(chunk), model=self.model_ref, label="error", error=reason,
            stream=pb.StreamEvidence(seq=chunk.seq, first_flag_token=-1, first_flag_char=-1))
        return self._stamp(verdict, chunk, started)


def _copy(state: SessionState) -> SessionState:
    return SessionState(state.last_seq, state.tokens_seen, state.chars_seen, state.max_risk, state.first_flag_token,
                        state.first_flag_char, state.finished,
                        None if state.head_state is None else state.head_state.copy(), state.context.copy())
