from pathlib import Path

import pytest
import yaml

from tidegate.samples import sample_messages
from tidegate.shared import topics
from tidegate.shared.kafka import record_key
from tidegate.shared.redis_client import Keys

ROOT = Path(__file__).resolve().parents[2]


def test_every_topic_has_a_key_field_present_on_its_payload():
    samples = sample_messages()
    for t in topics.TOPICS:
        assert record_key(t, samples[t.name]), t.name


def test_generation_chunks_are_keyed_by_session():
    t = topics.topic(topics.GEN_CHUNKS)
    assert record_key(t, sample_messages()[t.name]) == b"sess-42"


def test_unknown_topic_names_fail_loudly():
    with pytest.raises(KeyError, match="unknown topic"):
        topics.topic("tidegate.nope.v1")


def test_strimzi_topics_match_the_topic_table():
    docs = [d for d in yaml.safe_load_all((ROOT / "k8s/base/topics.yaml").read_text()) if d]
    declared = {d["spec"].get("topicName", d["metadata"]["name"]): d["spec"] for d in docs}
    assert set(declared) == set(topics.BY_NAME)
    for t in topics.TOPICS:
        assert declared[t.name]["partitions"] == t.partitions, t.name
        config = {k: str(v) for k, v in declared[t.name]["config"].items()}
        assert config.items() >= t.config.items(), t.name  # production may add settings, never drop ours


def test_redis_keys_share_a_cluster_hash_tag_per_subject():
    keys = Keys("tg")
    state, ctx = keys.subject("acme", "sess-1", "sld"), keys.subject("acme", "sess-1", "ctx")
    assert state == "tg:{acme:sess-1}:sld"
    tag = lambda k: k[k.index("{") + 1:k.index("}")]  # noqa: E731
    assert tag(state) == tag(ctx)
    assert tag(keys.subject("acme", "sess-2", "sld")) != tag(state)


def test_redis_key_parts_cannot_break_the_hash_tag():
    key = Keys("tg").subject("a}b", "x:{y", "sld")
    assert key.count("{") == 1 and key.count("}") == 1
    with pytest.raises(ValueError):
        Keys("tg").subject("", "s", "sld")
