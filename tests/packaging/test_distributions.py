"""The package builds into a wheel and an sdist, and the sdist alone is enough.

This is the promise the original provider could not keep (it shipped wheels only):
a clean virtual environment with no checkout builds our sdist, installs it, and runs
the reference server from it. It also proves remsvc_core imports without Airflow or
pandas, since the fresh environment has neither.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = ("remsvc_core/_proto/RemSvc_pb2.py", "remsvc_core/_proto/RemSvc_pb2_grpc.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy so the sdist is made from tracked-looking files only and the
    # build cannot lean on stubs already generated in the working tree.
    src = tmp_path_factory.mktemp("src") / "remsvc"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", "RemSvc_pb2*", "dist", "build"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {
        "sdist": next(out.glob("*.tar.gz")),
        "wheel": next(out.glob("*.whl")),
    }


def test_wheel_ships_stubs_and_entry_points(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        text = wheel.read(entry_points).decode()
        metadata = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert set(STUBS) <= names
    assert "[apache_airflow_provider]" in text
    assert "remsvc_provider:get_provider_info" in text
    assert "[remsvc.handlers]" in text
    assert "dataframe = " in text
    assert "remsvc = remsvc_core.cli:main" in text
    # Runtime floors derived from the generator that wrote the stubs.
    assert "Requires-Dist: grpcio>=" in metadata
    assert re.search(r"^Requires-Dist: protobuf(<\d+,)?>=\d", metadata, re.M)


def test_sdist_carries_proto_hook_and_stubs(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"proto/RemSvc.proto", "hatch_build.py", "pyproject.toml", *STUBS} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_sdist_installs_and_serves_without_a_checkout(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sdist = Path(shutil.copy(dists["sdist"], elsewhere))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(sdist)],
        check=True,
        cwd=elsewhere,
        env=clean_env,
        timeout=600,
        capture_output=True,
    )
    probe = (
        "import sys, remsvc_core, remsvc_core.wire;"
        "assert 'airflow' not in sys.modules and 'pandas' not in sys.modules;"
        "import importlib.util as u;"
        "assert u.find_spec('airflow') is None and u.find_spec('pandas') is None;"
        "print(remsvc_core.wire.pb.DESCRIPTOR.package)"
    )
    done = subprocess.run(
        [str(python), "-c", probe],
        cwd=elsewhere,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RS"

    port_file = elsewhere / "port"
    config = elsewhere / "server.ini"
    config.write_text("[server]\nport = 0\ncmd_timeout_ms = 5000\n")
    server = subprocess.Popen(
        [
            str(env_dir / "bin" / "remsvc-server"),
            "--config",
            str(config),
            "--port-file",
            str(port_file),
        ],
        cwd=elsewhere,
        env=clean_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "server did not report its port within 30 s"
            time.sleep(0.1)
        port = int(port_file.read_text())
        ping = subprocess.run(
            [
                str(env_dir / "bin" / "remsvc"),
                "run",
                "--target",
                f"127.0.0.1:{port}",
                "echo from-sdist",
            ],
            cwd=elsewhere,
            env=clean_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ping.returncode == 0, ping.stderr
        assert "from-sdist" in ping.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
