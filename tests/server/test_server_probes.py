"""The standard probes against a real server process: health checking and reflection.

Clients are the real ones: grpcio-health-checking's stub, and grpcio-reflection's
descriptor database (what grpcurl does to list services).
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TOKEN = "tok-probes-0c7e5a19b2d4"
BEARER = [("authorization", f"Bearer {TOKEN}")]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_check_needs_no_token_and_says_serving(server_process):
    server = server_process(auth={"ops": TOKEN})
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "RS.RemSvc"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        # Only Check is open: Watch and List need the token like every other call.
        with pytest.raises(grpc.RpcError) as watch:
            next(health.Watch(health_pb2.HealthCheckRequest(), timeout=10))
        assert watch.value.code() == grpc.StatusCode.UNAUTHENTICATED
        listed = health.List(health_pb2.HealthListRequest(), metadata=BEARER, timeout=10)
        assert {name: s.status for name, s in listed.statuses.items()} == {
            "": SERVING,
            "RS.RemSvc": SERVING,
        }


def test_watch_sees_not_serving_at_the_drain_and_does_not_hold_it_open(server_process):
    server = server_process(auth={"ops": TOKEN}, drain_grace_s=60)
    with grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="RS.RemSvc"), metadata=BEARER, timeout=60
        )
        assert next(watch).status == SERVING
        began = time.monotonic()
        server.popen.send_signal(signal.SIGTERM)
        assert [reply.status for reply in watch] == [NOT_SERVING]  # then the call ends
    assert server.wait(timeout=30) == 0
    # The open Watch did not keep the server draining for its 60 s grace.
    assert time.monotonic() - began < 30


def test_reflection_lists_the_services_to_a_caller_with_a_token(server_process):
    server = server_process(auth={"ops": TOKEN})
    with grpc.insecure_channel(server.target) as channel:
        without = ProtoReflectionDescriptorDatabase(channel)
        with pytest.raises(grpc.RpcError) as refused:
            without.get_services()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(server.target) as plain:
        channel = grpc.intercept_channel(plain, _Metadata(BEARER))
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"RS.RemSvc", "grpc.health.v1.Health"} <= services
        described = database.FindFileContainingSymbol("RS.RemSvc")
        assert [m.name for m in described.service[0].method] == [
            "Ping",
            "GetStatus",
            "RemCmd",
            "RemCmdStrm",
        ]


def test_reflection_and_health_without_auth(server_process):
    server = server_process()
    with grpc.insecure_channel(server.target) as channel:
        assert "RS.RemSvc" in ProtoReflectionDescriptorDatabase(channel).get_services()
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING


class _Metadata(grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds metadata to every call (the reflection client takes no metadata argument)."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata

    def intercept_stream_stream(self, continuation, details, request_iterator):
        details = details._replace(metadata=[*(details.metadata or ()), *self.metadata])
        return continuation(details, request_iterator)
