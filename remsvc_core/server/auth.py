"""Bearer-token authentication for the reference server, as a gRPC server interceptor.

Every call must carry ``authorization: Bearer <token>`` (the scheme is compared
case-sensitively, like upstream). The presented token is compared with *every*
configured token in constant time — digests of equal length through
:func:`hmac.compare_digest`, and no early exit — so timing tells nothing about which
token, or how much of one, matched. The identity is put in :data:`current_identity`
for the service's logs; the token is never logged or echoed.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import grpc
from grpc import aio

__all__ = ["ANONYMOUS", "BearerAuthInterceptor", "current_identity"]

log = logging.getLogger("remsvc.server")

ANONYMOUS = "anonymous"
current_identity: contextvars.ContextVar[str] = contextvars.ContextVar(
    "remsvc_identity", default=ANONYMOUS
)

_SCHEME = "Bearer "


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class BearerAuthInterceptor(aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Refuses calls without a known bearer token with UNAUTHENTICATED.

    ``open_methods`` (full method names) are let through without a token.
    """

    def __init__(self, tokens: Mapping[str, str], open_methods: Collection[str] = ()) -> None:
        if not tokens:
            raise ValueError("BearerAuthInterceptor needs at least one identity")
        # Only digests are kept: the interceptor never holds a token it could leak.
        self._table = [(identity, _digest(token)) for identity, token in sorted(tokens.items())]
        self._open_methods = frozenset(open_methods)

    def authenticate(
        self, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> tuple[str | None, str]:
        """(identity, "") for a good token, else (None, why it was refused)."""
        header = None
        for key, value in metadata or ():
            if key.lower() == "authorization":
                header = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                break
        if header is None:
            return None, "missing authorization metadata; send 'authorization: Bearer <token>'"
        if not header.startswith(_SCHEME):
            return None, "authorization scheme must be 'Bearer' (case-sensitive)"
        presented = _digest(header[len(_SCHEME) :])
        match: str | None = None
        for identity, expected in self._table:
            # No break: every comparison runs whatever the outcome.
            if hmac.compare_digest(presented, expected) and match is None:
                match = identity
        if match is None:
            return None, "unknown bearer token"
        return match, ""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in self._open_methods:
            return handler
        identity, problem = self.authenticate(handler_call_details.invocation_metadata)
        if identity is None:
            log.warning("refused %s: %s", handler_call_details.method, problem)
            return _refusing(handler, problem)
        return _as_identity(handler, identity)


def _replace_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: Callable[..., Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    kinds = {
        (False, False): (grpc.unary_unary_rpc_method_handler, "unary_unary"),
        (False, True): (grpc.unary_stream_rpc_method_handler, "unary_stream"),
        (True, False): (grpc.stream_unary_rpc_method_handler, "stream_unary"),
        (True, True): (grpc.stream_stream_rpc_method_handler, "stream_stream"),
    }
    make, _ = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _original(handler: grpc.RpcMethodHandler[Any, Any]) -> Callable[..., Any]:
    behaviour: Any = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    return behaviour  # type: ignore[no-any-return]


def _refusing(
    handler: grpc.RpcMethodHandler[Any, Any], problem: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def refuse(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

    return _replace_behaviour(handler, refuse)


def _as_identity(
    handler: grpc.RpcMethodHandler[Any, Any], identity: str
) -> grpc.RpcMethodHandler[Any, Any]:
    inner = _original(handler)
    if handler.response_streaming:

        async def stream_as(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            current_identity.set(identity)
            async for response in inner(request, context):
                yield response

        return _replace_behaviour(handler, stream_as)

    async def call_as(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        current_identity.set(identity)
        return await inner(request, context)

    return _replace_behaviour(handler, call_as)
