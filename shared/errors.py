"""Errors with a meaning callers can act on. The gRPC layer maps them to status codes; the Kafka layer maps
``InvalidArgument`` to a dead letter and ``Unavailable`` to a retry."""
from __future__ import annotations

import grpc


class TidegateError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(TidegateError, ValueError):
    """The input is wrong and retrying it will not help."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(TidegateError):
    """Too big or too many: shrink the request or slow down."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(TidegateError):
    """A dependency (Redis, the broker, a model) is down; retry later."""
    code = grpc.StatusCode.UNAVAILABLE


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, TidegateError):
        return exc.code
    try:  # Redis outages look like any other dependency outage to a caller
        import redis
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return grpc.StatusCode.UNAVAILABLE
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, NotImplementedError):  # what generated servicer stubs raise
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL
