import pytest

from tidegate.samples import sample_messages
from tidegate.shared import codec, topics
from tidegate.v1 import events_pb2 as pb


@pytest.mark.parametrize("content_type", [codec.PROTOBUF, codec.JSON])
@pytest.mark.parametrize("topic_name", list(topics.BY_NAME))
def test_every_sample_round_trips_in_both_encodings(topic_name, content_type):
    message = sample_messages()[topic_name]
    data = codec.encode(message, content_type)
    decoded = codec.decode(data, topics.topic(topic_name).message, content_type)
    assert decoded == message


def test_json_is_protobufs_canonical_json():
    data = codec.encode(sample_messages()[topics.GEN_CHUNKS], codec.JSON)
    assert b'"sessionId": "sess-42"' in data and b'"tokenIds": [504, 3055]' in data


def test_missing_content_type_means_binary_protobuf():
    message = sample_messages()[topics.MEDIA]
    assert codec.decode(codec.encode(message), pb.MediaUploaded, None) == message


@pytest.mark.parametrize("data,ctype,kind,needle", [
    (b"", None, "decode", "empty record value"),
    (b"\xff\xff\xff", None, "decode", "not a valid protobuf MediaUploaded"),
    (b"{not json", codec.JSON, "decode", "not a valid JSON MediaUploaded"),
    (b'{"tenantId": "a", "mediaId": "m", "bogus": 1}', codec.JSON, "decode", "bogus"),
    (b'{"tenantId": "a"}', codec.JSON, "validation", "missing required field(s): media_id"),
    (b"x", "text/csv", "decode", "unsupported content-type 'text/csv'"),
])
def test_bad_records_are_rejected_with_a_precise_reason(data, ctype, kind, needle):
    with pytest.raises(codec.DecodeFailure) as info:
        codec.decode(data, pb.MediaUploaded, ctype)
    assert info.value.kind == kind
    assert needle in str(info.value)


def test_required_message_fields_are_checked():
    with pytest.raises(codec.DecodeFailure, match="subject"):
        codec.validate(pb.Verdict(verdict_id="v"))
    codec.validate(pb.Verdict(verdict_id="v", subject=pb.Subject(id="s")))


def test_header_lookup_is_case_insensitive():
    assert codec.header_value([("Content-Type", b"application/json")], "content-type") == "application/json"
    assert codec.header_value(None, "content-type") is None
