"""Record codec: protobuf binary by default, protobuf canonical JSON when ``content-type: application/json``.

A platform can publish JSON without code generation; Tidegate itself always writes binary. Decoding also validates the
fields every consumer relies on, so a bad record is rejected once, at the edge, with a reason a human can act on.
"""
from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from tidegate.v1 import events_pb2 as pb

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPE = "content-type"

# Fields a record must carry to be handled at all; deeper checks belong to each worker.
REQUIRED_FIELDS: dict[type[Message], tuple[str, ...]] = {
    pb.MediaUploaded: ("tenant_id", "media_id"),
    pb.TokenChunk: ("tenant_id", "session_id", "model_id"),
    pb.Verdict: ("verdict_id", "subject"),
    pb.Action: ("action_id", "subject"),
    pb.ReviewItem: ("review_id", "subject"),
    pb.ReviewDecision: ("review_id",),
    pb.DeadLetter: ("source_topic",),
}


class DecodeFailure(ValueError):
    """The bytes are not a valid record of the expected type; ``kind`` is 'decode' or 'validation'."""

    def __init__(self, message: str, kind: str = "decode"):
        super().__init__(message)
        self.kind = kind


def header_value(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key.lower() == name:
            return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    return None


def encode(message: Message, content_type: str = PROTOBUF) -> bytes:
    if content_type == PROTOBUF:
        return message.SerializeToString(deterministic=True)
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    raise ValueError(f"unsupported content type {content_type!r}")


def validate(message: Message) -> None:
    missing = []
    for name in REQUIRED_FIELDS.get(type(message), ()):
        descriptor = message.DESCRIPTOR.fields_by_name[name]
        present = (message.HasField(name) if descriptor.message_type is not None else bool(getattr(message, name)))
        if not present:
            missing.append(name)
    if missing:
        raise DecodeFailure(f"{message.DESCRIPTOR.name} is missing required field(s): {', '.join(missing)}",
                            kind="validation")


def decode(data: bytes | None, message_type: type[Message], content_type: str | None = None) -> Message:
    """Decode and validate one record value; raises ``DecodeFailure`` with a precise reason."""
    name = message_type.DESCRIPTOR.name
    if not data:
        raise DecodeFailure(f"empty record value (expected {name})")
    ctype = (content_type or PROTOBUF).split(";")[0].strip().lower()
    message = message_type()
    if ctype in (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"):
        try:
            message.ParseFromString(data)
        except (DecodeError, RuntimeError) as exc:
            raise DecodeFailure(f"not a valid protobuf {name}: {exc}") from None
    elif ctype == JSON:
        try:
            json_format.Parse(data.decode("utf-8"), message)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise DecodeFailure(f"not a valid JSON {name}: {exc}") from None
    else:
        raise DecodeFailure(f"unsupported content-type {ctype!r} (use {PROTOBUF} or {JSON})")
    validate(message)
    return message
