"""Per-session SLD state in Redis.

One hash per session, ``<ns>:{<tenant>:<session>}:sld``, with fields ``seq`` (the last applied chunk, readable by the
compare-and-set script) and ``blob`` (everything else, packed). The record's size is constant in the generation's
length: the head's state is bounded, and text mode keeps a bounded context window. Loads and saves for a whole batch
of sessions travel in one pipeline each.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import redis

from tidegate.shared.redis_client import Keys

_HEADER = struct.Struct("<qqqdqqII")  # tokens, chars, first_flag_token, max_risk, first_flag_char, flags, n_state, n_ctx
FINISHED = 1  # flags bit: the generation ended; only the tombstone remains


@dataclass
class SessionState:
    last_seq: int = -1                 # -1: nothing applied yet
    tokens_seen: int = 0
    chars_seen: int = 0
    max_risk: float = 0.0
    first_flag_token: int = -1
    first_flag_char: int = -1
    finished: bool = False
    head_state: np.ndarray | None = None                      # float32 [state_size]
    context: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # text mode: recent token ids

    def pack(self) -> bytes:
        state = np.zeros(0, np.float32) if self.head_state is None else self.head_state.astype(np.float32, copy=False)
        ctx = self.context.astype(np.uint32, copy=False)
        header = _HEADER.pack(self.tokens_seen, self.chars_seen, self.first_flag_token, self.max_risk,
                              self.first_flag_char, FINISHED if self.finished else 0, state.size, ctx.size)
        return header + state.tobytes() + ctx.tobytes()

    @classmethod
    def unpack(cls, seq: int, blob: bytes) -> "SessionState":
        tokens, chars, flag_tok, max_risk, flag_char, flags, n_state, n_ctx = _HEADER.unpack_from(blob)
        at = _HEADER.size
        state = np.frombuffer(blob, np.float32, n_state, at).copy() if n_state else None
        ctx = np.frombuffer(blob, np.uint32, n_ctx, at + 4 * n_state).copy()
        return cls(seq, tokens, chars, max_risk, flag_tok, flag_char, bool(flags & FINISHED), state, ctx)


# Compare-and-set on ``seq``: write only if nobody advanced the session since we read it.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'seq')
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'blob', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class SessionStore:
    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int, finished_ttl_s: int):
        self.client = client
        self.keys = Keys(namespace)
        self.ttl_ms = ttl_s * 1000
        self.finished_ttl_ms = finished_ttl_s * 1000
        self._cas = client.register_script(_CAS)

    def key(self, tenant_id: str, session_id: str) -> str:
        return self.keys.subject(tenant_id, session_id, "sld")

    def load_many(self, ids: list[tuple[str, str]]) -> list[SessionState]:
        pipe = self.client.pipeline(transaction=False)
        for tenant_id, session_id in ids:
            pipe.hmget(self.key(tenant_id, session_id), "seq", "blob")
        out = []
        for seq, blob in pipe.execute():
            out.append(SessionState() if seq is None or blob is None else SessionState.unpack(int(seq), blob))
        return out

    def save_many(self, items: list[tuple[str, str, int, SessionState]]) -> list[bool]:
        """``(tenant, session, expected_last_seq, new_state)`` each; True where the compare-and-set won."""
        if not items:
            return []
        pipe = self.client.pipeline(transaction=False)
        for tenant_id, session_id, expected, state in items:
            ttl = self.finished_ttl_ms if state.finished else self.ttl_ms
            self._cas(keys=[self.key(tenant_id, session_id)],
                      args=["" if expected < 0 else str(expected), str(state.last_seq), state.pack(), ttl],
                      client=pipe)
        return [bool(r) for r in pipe.execute()]
