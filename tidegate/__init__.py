"""Tidegate: real-time moderation over Kafka and gRPC."""

__version__ = "0.1.0"
