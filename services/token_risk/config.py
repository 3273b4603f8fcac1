"""Settings of the token-risk service (``TIDEGATE_TOKEN_RISK_*``), next to the common ``Settings``."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TokenRiskSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDEGATE_TOKEN_RISK_", extra="ignore")

    head_dir: Path | None = Field(None, description="SLD head folder (model.safetensors + model_card.json); "
                                                    "default: the committed head.")
    model_ids: list[str] = Field(["smollm2-135m-instruct"],
                                 description="Protected-model ids (TokenChunk.model_id) this head serves.")
    protected_model: str | None = Field(None, description="Text mode: HF folder or .gguf of the protected model; "
                                                          "default: the packaged SmolLM2 GGUF.")
    text_mode: bool = Field(True, description="Accept chunks without latents by running the protected model.")
    context_tokens: int = Field(512, description="Text mode: tokens of context kept per session in Redis.")
    max_chunk_tokens: int = Field(256, description="Larger chunks are rejected (RESOURCE_EXHAUSTED / DLQ).")
    max_prompt_tokens: int = Field(2048, description="Larger prompt latents are rejected.")
    session_ttl_s: int = Field(3600, description="Idle sessions expire after this long.")
    finished_ttl_s: int = Field(600, description="A finished session's tombstone (blocks replays) lives this long.")
    exact_char_offsets: bool = Field(True, description="Load the protected model's tokenizer so a flagged token's "
                                                        "character offset is exact (else: end of its chunk).")
    group_id: str = Field("tidegate-token-risk", description="Kafka consumer group.")
