"""Fixtures that start real servers once per test session: each Kafka-protocol broker (noida, tansu) with its own
redis-server, on free loopback ports, torn down even when tests fail."""
from __future__ import annotations

import os
import uuid

import pytest

from tidegate.shared.config import Settings
from tidegate.shared.kafka import ensure_topics
from tidegate.shared.stack import Stack, StackState

BROKERS = os.environ.get("TIDEGATE_TEST_BROKERS", "noida,tansu").split(",")


@pytest.fixture(scope="session", params=BROKERS)
def stack(request, tmp_path_factory) -> Stack:
    """A running embedded stack (one per broker kind); tests parametrized over it run on both brokers."""
    stack = Stack(tmp_path_factory.mktemp(f"stack-{request.param}"), broker=request.param, kafka_port=0, redis_port=0)
    request.addfinalizer(lambda: stack.down(purge=True))
    stack.up(create_topics=False)
    return stack


@pytest.fixture(scope="session")
def stack_state(stack) -> StackState:
    state = stack.load()
    assert state is not None
    return state


@pytest.fixture
def settings(stack_state) -> Settings:
    """Settings for one test: its own topic prefix, so tests never see each other's records."""
    s = Settings(kafka_bootstrap=stack_state.kafka_bootstrap, redis_url=stack_state.redis_url,
                 kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}.", kafka_session_timeout_ms=6000,
                 metrics_port=0, redis_namespace=f"test-{uuid.uuid4().hex[:8]}")
    ensure_topics(s)
    return s


