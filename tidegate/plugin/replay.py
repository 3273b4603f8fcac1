"""Replay a recorded (prompt, response) as the plug-in would have streamed it: teacher-forced layer-L states of the
protected model, cut into chunks. For back-fills, demos and tests of the streaming path."""
from __future__ import annotations

from tidegate.v1 import events_pb2 as pb


def _latents(x, layer: int) -> pb.Latents:
    return pb.Latents(layer=layer, dim=x.shape[-1], dtype=pb.Latents.FLOAT32, data=x.float().numpy().tobytes())


def replay_chunks(lm, prompt: str, response: str, *, layer: int, model_id: str, tenant_id: str, session_id: str,
                  chunk_tokens: int = 16) -> tuple[list[pb.TokenChunk], object]:
    """The chunks (seq 0 = prompt, last one ``final``) and the pair's encoding (token char offsets in ``response``)."""
    Hp, Hr, enc = lm.pair_hidden(prompt, response, layer)
    ids = enc.input_ids[enc.prompt_len:]
    chunks = [pb.TokenChunk(tenant_id=tenant_id, session_id=session_id, model_id=model_id, seq=0, prompt=prompt,
                            prompt_latents=_latents(Hp, layer))]
    for start in range(0, len(ids), chunk_tokens):
        end = min(start + chunk_tokens, len(ids))
        text = response[enc.offsets[start][0] if start else 0: enc.offsets[end - 1][1]]
        chunks.append(pb.TokenChunk(tenant_id=tenant_id, session_id=session_id, model_id=model_id, seq=len(chunks),
                                    token_ids=ids[start:end], text=text, final=end == len(ids),
                                    latents=_latents(Hr[start:end], layer)))
    return chunks, enc
