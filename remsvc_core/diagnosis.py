"""Why a server did not answer: a look at what listens at its address.

gRPC says only ``UNAVAILABLE`` whether nothing listens, a firewall drops the packets,
or client and server disagree about TLS. Those need different fixes, so before a
message tells a user "is the server running?", :func:`explain_unavailable` opens a
plain TCP connection and, when something listens, tries a TLS handshake, and says
which of them it is. It sends no RemSvc call and no token.
"""

from __future__ import annotations

import socket
import ssl

from remsvc_core.settings import ChannelSettings

__all__ = ["explain_unavailable"]

PROBE_TIMEOUT_S = 3.0


def explain_unavailable(settings: ChannelSettings, timeout: float = PROBE_TIMEOUT_S) -> str:
    """One sentence naming the likely cause and its fix (blocking; run it off a loop)."""
    host, port = _split(settings.target)
    target = settings.target
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return f"the host name {host!r} does not resolve; check the host"
    except ConnectionRefusedError:
        return f"nothing listens at {target}; is the server running, and are host and port right?"
    except OSError as exc:
        return (
            f"{target} did not accept a TCP connection ({exc.strerror or type(exc).__name__}); "
            "check the address and any firewall in between"
        )
    with sock:
        speaks_tls = _speaks_tls(sock, host, timeout)
    if settings.use_tls and speaks_tls is False:
        return (
            f"the server at {target} does not speak TLS (it looks like a plaintext server); "
            "turn TLS off in the connection (use_ssl), or enable TLS on the server"
        )
    if not settings.use_tls and speaks_tls:
        return (
            f"the server at {target} speaks TLS but the connection has TLS off; "
            "turn TLS on (use_ssl) and give its CA certificate if it is not publicly trusted"
        )
    if settings.use_tls and speaks_tls:
        return (
            f"the server at {target} speaks TLS but the handshake was refused: check the CA "
            "certificate path, the TLS server name, and (for mutual TLS) the client certificate"
        )
    return (
        f"something listens at {target} but did not answer as a gRPC server; "
        "check the port, and any proxy in between"
    )


def _speaks_tls(sock: socket.socket, host: str, timeout: float) -> bool | None:
    """True if a TLS handshake completes, False if the peer answers but not in TLS,
    None if it could not be told (the peer said nothing in time)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking whether it speaks TLS at all
    context.set_alpn_protocols(["h2"])
    sock.settimeout(timeout)
    try:
        with context.wrap_socket(sock, server_hostname=host.strip("[]") or None):
            return True
    except ssl.SSLError as exc:
        # A TLS server that refuses us (it wants a client certificate, say) still
        # answered in TLS: an alert, not garbage.
        return "ALERT" in str(exc).upper()
    except (ConnectionResetError, BrokenPipeError):
        return False  # a plaintext HTTP/2 server drops a connection that starts with TLS
    except OSError:
        return None


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)
