"""Redis connection and key layout.

Keys are ``<namespace>:{<tenant>:<subject>}:<kind>``: the braces are a Redis Cluster hash tag, so every key of one
session (or media item) lands on the same slot and multi-key scripts and transactions stay legal on a cluster.
"""
from __future__ import annotations

import redis

from tidegate.shared.config import Settings


def make_redis(settings: Settings, **overrides) -> redis.Redis:
    """A client from ``TIDEGATE_REDIS_URL`` (redis:// or rediss:// for TLS), with AUTH and CA overrides applied."""
    options: dict = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, "health_check_interval": 30}
    if settings.redis_password:
        options["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://") and settings.redis_ssl_ca_certs:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    options.update(overrides)
    return redis.Redis.from_url(settings.redis_url, **options)


def _clean(part: str) -> str:
    # Braces would break the hash tag; colons would make keys ambiguous.
    if not part:
        raise ValueError("key parts must be non-empty")
    return part.replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


class Keys:
    """Builds namespaced, cluster-safe keys."""

    def __init__(self, namespace: str):
        self.namespace = _clean(namespace)

    def subject(self, tenant_id: str, subject_id: str, kind: str) -> str:
        return f"{self.namespace}:{{{_clean(tenant_id)}:{_clean(subject_id)}}}:{_clean(kind)}"
