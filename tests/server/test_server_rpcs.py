"""The four RPCs against a real ``remsvc-server`` subprocess, spoken with the raw stub."""

from __future__ import annotations

import grpc
import pytest

from remsvc_core.hashing import command_hash
from remsvc_core.wire import pb, pb_grpc


@pytest.fixture
def stub(server_process):
    server = server_process()
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.RemSvcStub(channel)


def test_ping_echoes_seq_time_and_data(stub):
    reply = stub.Ping(pb.PingMsg(seq=7, time=1_700_000_000_123, data=b"\x00\xffpayload"), timeout=10)
    assert (reply.seq, reply.time, reply.data) == (7, 1_700_000_000_123, b"\x00\xffpayload")


def test_remcmd_runs_one_command_and_echoes_tid_and_hash(stub):
    cmd = "echo out; echo err >&2; exit 3"
    reply = stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=42, src="test", hsh=command_hash(cmd)), timeout=10)
    assert (reply.tid, reply.rc, reply.out, reply.err, reply.hsh) == (42, 3, "out\n", "err\n", command_hash(cmd))
