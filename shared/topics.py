"""The one declarative table of Kafka topics: name, payload type, key, partitions and topic config.

``tidegate stack up`` creates them on the embedded broker; ``k8s/base/topics.yaml`` declares the same topics as
Strimzi ``KafkaTopic`` resources (a unit test keeps the two in step).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from tidegate.v1 import events_pb2 as pb

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    message: type[Message]
    key: str                    # which field is the record key: ordering holds per key
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


TOPICS: tuple[Topic, ...] = (
    Topic("tidegate.media.v1", pb.MediaUploaded, "media_id", 6,
          {"retention.ms": str(7 * DAY_MS), "max.message.bytes": str(8 * 1024 * 1024)},
          "Uploaded images from upstream platforms."),
    Topic("tidegate.gen-chunks.v1", pb.TokenChunk, "session_id", 12,
          {"retention.ms": str(1 * DAY_MS)},
          "Chunks of streaming LLM generations; one session always lands on one partition."),
    Topic("tidegate.verdicts.v1", pb.Verdict, "subject.id", 12,
          {"retention.ms": str(30 * DAY_MS)}, "Model verdicts, one per media item or generation chunk."),
    Topic("tidegate.actions.v1", pb.Action, "subject.id", 12,
          {"retention.ms": str(30 * DAY_MS)}, "Enforcement actions for upstream platforms."),
    Topic("tidegate.review.v1", pb.ReviewItem, "subject.id", 3,
          {"retention.ms": str(30 * DAY_MS)}, "Cases for the human review queue."),
    Topic("tidegate.review-decisions.v1", pb.ReviewDecision, "subject.id", 3,
          {"retention.ms": str(90 * DAY_MS)}, "Reviewers' decisions."),
    Topic("tidegate.audit.v1", pb.Action, "subject.id", 6,
          {"retention.ms": str(365 * DAY_MS)}, "Every policy decision, enforced or shadow, for audit and SIEM."),
    Topic("tidegate.dlq.v1", pb.DeadLetter, "source_topic", 3,
          {"retention.ms": str(30 * DAY_MS), "max.message.bytes": str(10 * 1024 * 1024)},
          "Records that could not be handled: original bytes, origin and reason."),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}

MEDIA, GEN_CHUNKS, VERDICTS, ACTIONS, REVIEW, REVIEW_DECISIONS, AUDIT, DLQ = (t.name for t in TOPICS)


def topic(name: str) -> Topic:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(BY_NAME)}") from None
