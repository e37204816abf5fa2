"""Build hooks: compile proto/RemSvc.proto into Python stubs inside the package.

The stubs are build outputs, never committed. They are generated for every build
target (wheel, sdist, editable), so an sdist carries both the ``.proto`` and the
stubs and can be rebuilt on a machine that has no checkout.

Generated code pins the runtime it needs (grpcio >= the grpcio-tools that wrote it,
protobuf >= the protoc inside it), so the metadata hook derives the runtime
requirements from the generator actually used instead of guessing a floor.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

PROTO_SOURCE = Path("proto") / "RemSvc.proto"
STUB_PACKAGE = Path("remsvc_core") / "_proto"
STUB_NAMES = ("RemSvc_pb2.py", "RemSvc_pb2.pyi", "RemSvc_pb2_grpc.py")
_GENCODE_VERSION = re.compile(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", re.M)


@cache
def generate_stubs(root: str) -> tuple[str, str]:
    """Write the stubs under ``remsvc_core/_proto``; return (grpcio, protobuf) floors."""
    from grpc_tools import protoc
    from grpc_tools.grpc_version import VERSION as grpc_tools_version

    source = Path(root) / PROTO_SOURCE
    if not source.is_file():
        raise RuntimeError(f"cannot build remsvc: {source} is missing from the source tree")
    target = Path(root) / STUB_PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        # Placing the .proto at its package path makes protoc emit package-qualified
        # imports (from remsvc_core._proto import RemSvc_pb2), so no patching is needed.
        staged = Path(tmp) / "in" / STUB_PACKAGE / PROTO_SOURCE.name
        staged.parent.mkdir(parents=True)
        shutil.copyfile(source, staged)
        out = Path(tmp) / "out"
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"-I{Path(tmp) / 'in'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(staged),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {source}")
        target.mkdir(parents=True, exist_ok=True)
        for name in STUB_NAMES:
            shutil.copyfile(out / STUB_PACKAGE / name, target / name)
    match = _GENCODE_VERSION.search((target / "RemSvc_pb2.py").read_text())
    if match is None:
        raise RuntimeError("cannot read the protobuf gencode version from RemSvc_pb2.py")
    return grpc_tools_version, ".".join(match.groups())


class StubBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generate_stubs(self.root)
        build_data.setdefault("artifacts", []).extend(
            str(STUB_PACKAGE / name) for name in STUB_NAMES
        )


class RuntimeFloorMetadataHook(MetadataHookInterface):
    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        grpcio, protobuf = generate_stubs(self.root)
        major = int(protobuf.split(".")[0])
        base = list(self.config.get("base-dependencies", []))
        metadata["dependencies"] = [
            *base,
            f"grpcio>={grpcio}",
            f"protobuf>={protobuf},<{major + 1}",
        ]
