"""Tidegate's generation plug-in for Hugging Face transformers.

Wrap a causal LM's ``generate()``: the plug-in taps layer L, sends the hidden states of each chunk of new tokens to the
token-risk service (a gRPC stream or Kafka), and stops the generation when a verdict says ``stop`` (or, over Kafka, a
policy action says STOP_GENERATION)::

    from tidegate.plugin import GuardedGenerator, GrpcTransport
    guard = GuardedGenerator(model, tokenizer, GrpcTransport("risk:50051"), layer=12,
                             model_id="smollm2-135m-instruct", tenant_id="acme")
    result = guard.generate("How do I ...?", max_new_tokens=128)
    result.text, result.stopped, result.verdicts
"""
from tidegate.plugin.guard import GuardedGenerator, GuardedResult
from tidegate.plugin.transports import GrpcTransport, KafkaTransport, Transport

__all__ = ["GuardedGenerator", "GuardedResult", "GrpcTransport", "KafkaTransport", "Transport"]
