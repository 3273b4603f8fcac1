"""A chat loop with SmolLM2 guarded by Tidegate's token-risk service.

    tidegate stack up && tidegate text serve &        # a service to talk to (or point --target at yours)
    python examples/guarded_chat.py --target 127.0.0.1:50051
    python examples/guarded_chat.py --kafka            # same, through tidegate.gen-chunks.v1 / tidegate.verdicts.v1

Each reply streams to the service in chunks of hidden states from layer L; a stop verdict ends the reply at once.
"""
from __future__ import annotations

import argparse

from tidegate.plugin import GrpcTransport, GuardedGenerator, KafkaTransport
from tidegate.services.token_risk.kelp.lm import load_protected_model
from tidegate.services.token_risk.kelp.sld import load_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="token-risk gRPC address")
    parser.add_argument("--kafka", action="store_true", help="use Kafka (TIDEGATE_KAFKA_BOOTSTRAP) instead of gRPC")
    parser.add_argument("--token", help="bearer token, if the service requires one")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--chunk-tokens", type=int, default=16)
    parser.add_argument("prompt", nargs="*", help="one prompt; interactive when omitted")
    args = parser.parse_args()

    lm = load_protected_model()
    _, card = load_head()  # the layer the deployed head reads
    transport = KafkaTransport() if args.kafka else GrpcTransport(args.target, token=args.token)
    guard = GuardedGenerator(lm.model, lm.tokenizer, transport, layer=int(card["layer"]),
                             model_id="smollm2-135m-instruct", tenant_id="example", chunk_tokens=args.chunk_tokens)
    prompts = [" ".join(args.prompt)] if args.prompt else iter(lambda: input("\nyou> "), "")
    for prompt in prompts:
        result = guard.generate(prompt, max_new_tokens=args.max_new_tokens)
        print(f"bot> {result.text}")
        if result.stopped:
            print(f"[stopped by Tidegate: {result.stop_reason}]")
        else:
            risk = result.verdicts[-1].stream.max_risk if result.verdicts else float("nan")
            print(f"[allowed; {len(result.verdicts)} verdicts, max risk {risk:.3f}]")


if __name__ == "__main__":
    main()
