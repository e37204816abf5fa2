"""The standard probes: gRPC health checking (``grpc.health.v1``) and server reflection.

``grpc_health_probe``, Kubernetes' gRPC probes and ``grpcurl`` speak these, as they
do to the upstream server. Health answers SERVING for the server (``""``) and for
``RS.RemSvc`` while the server is up, and NOT_SERVING from the moment it starts
draining; ``Watch`` sends the status, then NOT_SERVING at the drain, and ends there
(so a watcher never holds a drain open for its whole grace). ``List`` lists both.

``Check`` needs no token (:data:`OPEN_METHODS`): Kubernetes probes cannot send one,
and it tells nothing but "up" or "draining". Watch, List and reflection do need one
when ``[auth]`` is on (``grpcurl -H 'authorization: Bearer ...'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from remsvc_core.wire import pb

__all__ = ["OPEN_METHODS", "HealthService", "add_standard_services"]

OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
REMSVC = pb.DESCRIPTOR.services_by_name["RemSvc"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Health of the whole server (``""``) and of ``RS.RemSvc``: both the same."""

    SERVICES = ("", REMSVC)

    def __init__(self) -> None:
        self._draining: asyncio.Event | None = None  # made on the server's loop

    @property
    def status(self) -> Any:
        """SERVING, or NOT_SERVING once draining."""
        draining = self._draining is not None and self._draining.is_set()
        return _NOT_SERVING if draining else _SERVING

    def start_draining(self) -> None:
        """From now on NOT_SERVING; watchers get it and their calls end."""
        self._event().set()

    def _event(self) -> asyncio.Event:
        if self._draining is None:
            self._draining = asyncio.Event()
        return self._draining

    async def Check(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        if request.service not in self.SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self.status)

    async def List(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        status = health_pb2.HealthCheckResponse(status=self.status)
        return health_pb2.HealthListResponse(statuses={name: status for name in self.SERVICES})

    async def Watch(
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        known = request.service in self.SERVICES
        sent = self.status if known else _UNKNOWN
        yield health_pb2.HealthCheckResponse(status=sent)
        # The drain may have begun while that first answer was being sent: whether it
        # still has to be said depends on what was sent, not on when we look.
        await self._event().wait()
        if known and sent != _NOT_SERVING:
            yield health_pb2.HealthCheckResponse(status=_NOT_SERVING)


def add_standard_services(server: aio.Server, services: list[str]) -> HealthService:
    """Add health checking and reflection to ``server``; ``services`` are the full
    names of the others it serves (listed by reflection). Returns the health service."""
    health = HealthService()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection([*services, health_name, reflection.SERVICE_NAME], server)
    return health
