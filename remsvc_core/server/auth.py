"""Who is calling: bearer tokens, or the client certificate, as gRPC server interceptors.

With ``[auth]`` tokens, every call must carry ``authorization: Bearer <token>`` (the
scheme is compared case-sensitively, like upstream). The presented token is compared
with *every* configured token in constant time — digests of equal length through
:func:`hmac.compare_digest`, and no early exit — so timing tells nothing about which
token, or how much of one, matched. The token's identity names the caller.

Without tokens but with mutual TLS, the verified client certificate names the
caller: its subject's common name (CN), or, without one, its first subject
alternative name, as gRPC's TLS layer reports them in the call's auth context.
Otherwise every caller is ``anonymous``.

The identity is put in :data:`current_identity` for the service (its policy,
limits and logs); the token is never logged or echoed. Refused calls are logged
with the peer's address, rate-limited (:class:`~remsvc_core.server.refusal_log.RefusalLog`)
so a flood of bad tokens cannot flood the log.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any

import grpc
from grpc import aio

from remsvc_core.server.identity_policy import ANONYMOUS
from remsvc_core.server.refusal_log import RefusalLog

__all__ = [
    "ANONYMOUS",
    "BearerAuthInterceptor",
    "CertificateIdentityInterceptor",
    "caller_interceptors",
    "certificate_identity",
    "current_identity",
]

log = logging.getLogger("remsvc.server")

current_identity: contextvars.ContextVar[str] = contextvars.ContextVar(
    "remsvc_identity", default=ANONYMOUS
)
# The auth-context properties that name a certificate's holder, in order of preference.
_CERTIFICATE_NAMES = ("x509_common_name", "x509_subject_alternative_name")

_SCHEME = "Bearer "


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def caller_interceptors(
    config: Any, open_methods: Collection[str] = ()
) -> list[aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The interceptors that name the callers of a server with ``config``
    (a :class:`~remsvc_core.server.config.ServerConfig`). ``open_methods`` (full method
    names, such as the health check's) need no token."""
    if config.auth:
        return [BearerAuthInterceptor(config.auth, open_methods=open_methods)]
    if config.identity_source == "certificate":
        return [CertificateIdentityInterceptor()]
    return []


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The name a verified client certificate gives its holder (see the module doc)."""
    for name in _CERTIFICATE_NAMES:
        for value in auth_context.get(name, ()):
            text = value.decode("utf-8", "replace")
            if text:
                # A name goes into log lines: nothing in it may forge one.
                return text if text.isprintable() else repr(text)
    return ANONYMOUS


class _CallerInterceptor(aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Replaces each call's handler by one that knows (or refuses) the caller."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self.for_caller(handler, handler_call_details)

    def for_caller(
        self, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        raise NotImplementedError


class CertificateIdentityInterceptor(_CallerInterceptor):
    """Names each caller by its client certificate (mutual TLS has verified it)."""

    def for_caller(
        self, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return _as_caller(handler, lambda context: certificate_identity(context.auth_context()))


class BearerAuthInterceptor(_CallerInterceptor):
    """Refuses calls without a known bearer token with UNAUTHENTICATED.

    ``open_methods`` (full method names) are let through without a token.
    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        refusals: RefusalLog | None = None,
        open_methods: Collection[str] = (),
    ) -> None:
        if not tokens:
            raise ValueError("BearerAuthInterceptor needs at least one identity")
        # Only digests are kept: the interceptor never holds a token it could leak.
        self._table = [(identity, _digest(token)) for identity, token in sorted(tokens.items())]
        self._refusals = refusals or RefusalLog(log)
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

    def for_caller(
        self, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if details.method in self._open_methods:
            return handler
        identity, problem = self.authenticate(details.invocation_metadata)
        if identity is None:
            return self._refusing(handler, details.method, problem)
        return _as_caller(handler, lambda context: identity)

    def _refusing(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, problem: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def refuse(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
            # Logged here, where the peer is known; never with the presented token.
            self._refusals.refused(method, context.peer(), problem)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

        return _replace_behaviour(handler, refuse)


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


def _as_caller(
    handler: grpc.RpcMethodHandler[Any, Any],
    identity_of: Callable[[aio.ServicerContext[Any, Any]], str],
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with :data:`current_identity` set, for the call, to ``identity_of``."""
    inner = _original(handler)
    if handler.response_streaming:

        async def stream_as(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            current_identity.set(identity_of(context))
            async for response in inner(request, context):
                yield response

        return _replace_behaviour(handler, stream_as)

    async def call_as(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        current_identity.set(identity_of(context))
        return await inner(request, context)

    return _replace_behaviour(handler, call_as)
