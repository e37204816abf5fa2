"""Fixtures for the docs tests: a sandbox "site" with a real TLS + token server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_site import Site

from remsvc_core import EmbeddedServer, ServerConfig

# A throwaway token for a loopback test server.
SITE_TOKEN = "docs-site-token-4f1c"


@pytest.fixture
def client_site(tmp_path: Path, tls_files) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """The analyst's view: ``db1.example.com:50051`` is a TLS server wanting a token.

    The server is the reference server on 127.0.0.1 with a certificate for
    ``localhost`` (what the doc host names are rewritten to); the CA is at the docs'
    ``/etc/remsvc/tls/ca.crt`` and the token in ``~/.config/remsvc/token``.
    """
    config = ServerConfig(
        port=0,
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"analyst": SITE_TOKEN},
        batch_state_dir=str(tmp_path / "batches"),  # the kept-batch examples need it
        source="<docs site>",
    )
    with EmbeddedServer(config) as server:
        site = Site(tmp_path / "site", port=server.port)
        ca = site.sandboxed("/etc/remsvc/tls/ca.crt")
        ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tls_files.ca_cert, ca)
        token = site.sandboxed("~/.config/remsvc/token")
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text(SITE_TOKEN + "\n", encoding="utf-8")
        token.chmod(0o600)
        yield site
