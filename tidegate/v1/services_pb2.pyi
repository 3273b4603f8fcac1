from tidegate.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeRequest(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _events_pb2.MediaUploaded
    def __init__(self, media: _Optional[_Union[_events_pb2.MediaUploaded, _Mapping]] = ...) -> None: ...

class AnalyzeBatchRequest(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _containers.RepeatedCompositeFieldContainer[_events_pb2.MediaUploaded]
    def __init__(self, media: _Optional[_Iterable[_Union[_events_pb2.MediaUploaded, _Mapping]]] = ...) -> None: ...

class AnalyzeBatchResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[_events_pb2.Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[_events_pb2.Verdict, _Mapping]]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[_events_pb2.Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[_events_pb2.Verdict, _Mapping]]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[_events_pb2.Action]
    def __init__(self, actions: _Optional[_Iterable[_Union[_events_pb2.Action, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class PolicyDocument(_message.Message):
    __slots__ = ("tenant_id", "policy_id", "version", "yaml")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    policy_id: str
    version: str
    yaml: str
    def __init__(self, tenant_id: _Optional[str] = ..., policy_id: _Optional[str] = ..., version: _Optional[str] = ..., yaml: _Optional[str] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("loaded",)
    LOADED_FIELD_NUMBER: _ClassVar[int]
    loaded: _containers.RepeatedCompositeFieldContainer[PolicyDocument]
    def __init__(self, loaded: _Optional[_Iterable[_Union[PolicyDocument, _Mapping]]] = ...) -> None: ...
