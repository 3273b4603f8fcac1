"""One realistic sample of every Kafka payload: used by ``tidegate demo`` and by the contract tests."""
from __future__ import annotations

import hashlib

import numpy as np
from google.protobuf.message import Message

from tidegate.shared import topics
from tidegate.v1 import events_pb2 as pb

_PNG_1X1 = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                         "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a1f5e4"
                         "5f0000000049454e44ae426082")


def sample_messages() -> dict[str, Message]:
    """topic name -> a sample message of that topic's type."""
    subject = pb.Subject(kind=pb.Subject.GENERATION, id="sess-42", tenant_id="acme", session_id="sess-42",
                         surface="chat")
    latents = np.arange(2 * 8, dtype=np.float16).reshape(2, 8)
    verdict = pb.Verdict(
        verdict_id="v-1", subject=subject, model=pb.ModelRef(name="kelp-sld", version="0.1.0"), risk=0.91,
        label="harmful", scores=[pb.CategoryScore(category="harmful", score=0.91)],
        stream=pb.StreamEvidence(seq=3, tokens_seen=48, current_risk=0.88, max_risk=0.91, first_flag_token=40,
                                 first_flag_char=171, stop=True),
        latency_ms=3.2)
    action = pb.Action(action_id="a-1", verdict_ids=["v-1"], subject=subject, action=pb.STOP_GENERATION,
                       policy_id="acme-default", rule_id="stop-harmful-stream",
                       reason="harmful risk 0.91 >= 0.80 at token 40", shadow=False)
    samples: dict[str, Message] = {
        topics.MEDIA: pb.MediaUploaded(tenant_id="acme", media_id="img-7", content_type="image/png", data=_PNG_1X1,
                                       sha256=hashlib.sha256(_PNG_1X1).hexdigest(), metadata={"uploader": "u-1"},
                                       surface="post"),
        topics.GEN_CHUNKS: pb.TokenChunk(
            tenant_id="acme", session_id="sess-42", model_id="smollm2-135m-instruct", seq=1,
            token_ids=[504, 3055], text=" Sure,", surface="chat",
            latents=pb.Latents(layer=12, dim=8, dtype=pb.Latents.FLOAT16, data=latents.tobytes())),
        topics.VERDICTS: verdict,
        topics.ACTIONS: action,
        topics.REVIEW: pb.ReviewItem(review_id="r-1", subject=subject, verdicts=[verdict], action=action, priority=5),
        topics.REVIEW_DECISIONS: pb.ReviewDecision(review_id="r-1", subject=subject, reviewer="analyst-3",
                                                   decision=pb.BLOCK, note="confirmed"),
        topics.AUDIT: action,
        topics.DLQ: pb.DeadLetter(source_topic=topics.MEDIA, source_partition=2, source_offset=17, key=b"img-9",
                                  value=b"\x00garbage", headers={"content-type": "application/x-protobuf"},
                                  error="not a valid protobuf MediaUploaded", error_type="decode", service="demo"),
    }
    missing = set(topics.BY_NAME) - set(samples)
    assert not missing, f"no sample for {missing}"
    return samples
