"""Runtime configuration: environment variables prefixed ``TIDEGATE_`` (pydantic-settings).

Every service reads the same ``Settings``; defaults match the embedded stack (``tidegate stack up``), so a developer
needs no configuration at all. Production sets the connection strings, TLS files and tokens through the environment
(Kubernetes ConfigMaps and Secrets).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDEGATE_", extra="ignore")

    # --- Kafka -----------------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Comma-separated host:port list of Kafka brokers.")
    kafka_client_id: str = Field("tidegate", description="Client id prefix used in broker logs and quotas.")
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str | None = Field(None, description="e.g. SCRAM-SHA-512 (Strimzi's default user auth).")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # The embedded brokers need >= 6 s; Apache Kafka accepts anything in [6 s, 30 min] by default.
    kafka_session_timeout_ms: int = Field(10_000, description="Consumer group session timeout.")
    kafka_group_instance_id: str | None = Field(
        None, description="Static group membership (e.g. the pod name): a restarted replica takes its partitions "
                          "back at once instead of waiting out a rebalance.")
    # Also the rebalance timeout: how long a group waits for a vanished member before moving its partitions.
    kafka_max_poll_interval_ms: int = Field(60_000, description="Longest time one batch may take to handle.")
    kafka_fetch_max_wait_ms: int = Field(20, description="How long the broker may hold a fetch waiting for data: "
                                                         "the floor of end-to-end latency when traffic is light.")
    kafka_max_poll_records: int = Field(500, description="Upper bound on records handled per poll (one batch).")
    kafka_topic_prefix: str = Field("", description="Prefix for every topic name (e.g. 'staging.').")
    kafka_replication_factor: int = Field(1, description="Replication factor used when creating topics.")

    # --- Redis -----------------------------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:16379/0",
                           description="redis:// or rediss:// (TLS) URL; credentials may be embedded.")
    redis_password: str | None = Field(None, description="AUTH password (overrides the URL's).")
    redis_ssl_ca_certs: str | None = Field(None, description="CA bundle for rediss:// URLs.")
    redis_namespace: str = Field("tidegate", description="Prefix of every key this deployment writes.")

    # --- gRPC ------------------------------------------------------------------------------------------------
    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds (0.0.0.0 in containers).")
    grpc_port: int = Field(50051, description="gRPC port (0 picks a free one).")
    grpc_tls_cert: Path | None = Field(None, description="Server certificate (PEM); enables TLS.")
    grpc_tls_key: Path | None = Field(None, description="Server private key (PEM).")
    grpc_tls_client_ca: Path | None = Field(None, description="CA for client certificates; enables mTLS.")
    grpc_auth_tokens: list[str] = Field(default_factory=list,
                                        description="Accepted bearer tokens (JSON list); empty disables auth.")
    grpc_grace_s: float = Field(10.0, description="Seconds in-flight RPCs get on shutdown.")

    # --- Observability ---------------------------------------------------------------------------------------
    metrics_port: int = Field(9464, description="Prometheus /metrics port (0 disables the endpoint).")
    log_level: str = Field("INFO")
    log_format: str = Field("json", description="json (one object per line) or text.")

    # --- Embedded stack --------------------------------------------------------------------------------------
    run_dir: Path = Field(Path("run/stack"), description="Where `tidegate stack` keeps its state, data and logs.")
    broker: str = Field("noida", description="Embedded Kafka-protocol broker: noida or tansu.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
