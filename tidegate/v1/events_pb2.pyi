import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_KIND_UNSPECIFIED: _ClassVar[ActionKind]
    ALLOW: _ClassVar[ActionKind]
    FLAG: _ClassVar[ActionKind]
    BLOCK: _ClassVar[ActionKind]
    STOP_GENERATION: _ClassVar[ActionKind]
    HUMAN_REVIEW: _ClassVar[ActionKind]
ACTION_KIND_UNSPECIFIED: ActionKind
ALLOW: ActionKind
FLAG: ActionKind
BLOCK: ActionKind
STOP_GENERATION: ActionKind
HUMAN_REVIEW: ActionKind

class MediaUploaded(_message.Message):
    __slots__ = ("tenant_id", "media_id", "content_type", "data", "uri", "sha256", "metadata", "uploaded_at", "surface")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_AT_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    media_id: str
    content_type: str
    data: bytes
    uri: str
    sha256: str
    metadata: _containers.ScalarMap[str, str]
    uploaded_at: _timestamp_pb2.Timestamp
    surface: str
    def __init__(self, tenant_id: _Optional[str] = ..., media_id: _Optional[str] = ..., content_type: _Optional[str] = ..., data: _Optional[bytes] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., uploaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., surface: _Optional[str] = ...) -> None: ...

class Latents(_message.Message):
    __slots__ = ("layer", "dim", "dtype", "data")
    class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DTYPE_UNSPECIFIED: _ClassVar[Latents.DType]
        FLOAT32: _ClassVar[Latents.DType]
        FLOAT16: _ClassVar[Latents.DType]
        BFLOAT16: _ClassVar[Latents.DType]
    DTYPE_UNSPECIFIED: Latents.DType
    FLOAT32: Latents.DType
    FLOAT16: Latents.DType
    BFLOAT16: Latents.DType
    LAYER_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    layer: int
    dim: int
    dtype: Latents.DType
    data: bytes
    def __init__(self, layer: _Optional[int] = ..., dim: _Optional[int] = ..., dtype: _Optional[_Union[Latents.DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ("tenant_id", "session_id", "model_id", "seq", "prompt", "token_ids", "text", "final", "latents", "prompt_latents", "sent_at", "surface")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_LATENTS_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    session_id: str
    model_id: str
    seq: int
    prompt: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    text: str
    final: bool
    latents: Latents
    prompt_latents: Latents
    sent_at: _timestamp_pb2.Timestamp
    surface: str
    def __init__(self, tenant_id: _Optional[str] = ..., session_id: _Optional[str] = ..., model_id: _Optional[str] = ..., seq: _Optional[int] = ..., prompt: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., latents: _Optional[_Union[Latents, _Mapping]] = ..., prompt_latents: _Optional[_Union[Latents, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., surface: _Optional[str] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("kind", "id", "tenant_id", "session_id", "surface")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Subject.Kind]
        MEDIA: _ClassVar[Subject.Kind]
        GENERATION: _ClassVar[Subject.Kind]
    KIND_UNSPECIFIED: Subject.Kind
    MEDIA: Subject.Kind
    GENERATION: Subject.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    kind: Subject.Kind
    id: str
    tenant_id: str
    session_id: str
    surface: str
    def __init__(self, kind: _Optional[_Union[Subject.Kind, str]] = ..., id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., session_id: _Optional[str] = ..., surface: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class CategoryScore(_message.Message):
    __slots__ = ("category", "score")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    category: str
    score: float
    def __init__(self, category: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ImageEvidence(_message.Message):
    __slots__ = ("crop_scores",)
    CROP_SCORES_FIELD_NUMBER: _ClassVar[int]
    crop_scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, crop_scores: _Optional[_Iterable[float]] = ...) -> None: ...

class StreamEvidence(_message.Message):
    __slots__ = ("seq", "tokens_seen", "current_risk", "max_risk", "first_flag_token", "first_flag_char", "stop")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_SEEN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_RISK_FIELD_NUMBER: _ClassVar[int]
    MAX_RISK_FIELD_NUMBER: _ClassVar[int]
    FIRST_FLAG_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FIRST_FLAG_CHAR_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tokens_seen: int
    current_risk: float
    max_risk: float
    first_flag_token: int
    first_flag_char: int
    stop: bool
    def __init__(self, seq: _Optional[int] = ..., tokens_seen: _Optional[int] = ..., current_risk: _Optional[float] = ..., max_risk: _Optional[float] = ..., first_flag_token: _Optional[int] = ..., first_flag_char: _Optional[int] = ..., stop: _Optional[bool] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("verdict_id", "subject", "model", "risk", "label", "scores", "image", "stream", "latency_ms", "created_at", "error")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    verdict_id: str
    subject: Subject
    model: ModelRef
    risk: float
    label: str
    scores: _containers.RepeatedCompositeFieldContainer[CategoryScore]
    image: ImageEvidence
    stream: StreamEvidence
    latency_ms: float
    created_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, verdict_id: _Optional[str] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., risk: _Optional[float] = ..., label: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[CategoryScore, _Mapping]]] = ..., image: _Optional[_Union[ImageEvidence, _Mapping]] = ..., stream: _Optional[_Union[StreamEvidence, _Mapping]] = ..., latency_ms: _Optional[float] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("action_id", "verdict_ids", "subject", "action", "policy_id", "rule_id", "reason", "shadow", "created_at")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_IDS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    verdict_ids: _containers.RepeatedScalarFieldContainer[str]
    subject: Subject
    action: ActionKind
    policy_id: str
    rule_id: str
    reason: str
    shadow: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, action_id: _Optional[str] = ..., verdict_ids: _Optional[_Iterable[str]] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., action: _Optional[_Union[ActionKind, str]] = ..., policy_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., reason: _Optional[str] = ..., shadow: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReviewItem(_message.Message):
    __slots__ = ("review_id", "subject", "verdicts", "action", "priority", "created_at")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    subject: Subject
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    action: Action
    priority: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ..., action: _Optional[_Union[Action, _Mapping]] = ..., priority: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReviewDecision(_message.Message):
    __slots__ = ("review_id", "subject", "reviewer", "decision", "note", "decided_at")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    subject: Subject
    reviewer: str
    decision: ActionKind
    note: str
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., reviewer: _Optional[str] = ..., decision: _Optional[_Union[ActionKind, str]] = ..., note: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("source_topic", "source_partition", "source_offset", "key", "value", "headers", "error", "error_type", "service", "failed_at")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, str]
    error: str
    error_type: str
    service: str
    failed_at: _timestamp_pb2.Timestamp
    def __init__(self, source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., error: _Optional[str] = ..., error_type: _Optional[str] = ..., service: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
