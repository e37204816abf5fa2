"""Running a command as another user (``cmdusr``): who that is, and how to become them.

Switching user happens in a tiny exec'd helper rather than through
``Popen(user=...)``: that would make Python fork() instead of vfork(), and fork()
runs grpc's atfork handlers in a child of a busy multi-threaded server, which was
seen to crash the child (SIGSEGV) now and then. The helper runs with ``-I -S``, so it
starts in milliseconds and imports nothing of ours. It exits 125 when the switch
fails and 127 when the command cannot be started, as upstream reports them.
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass

from remsvc_core.server.outcome import CannotStart

__all__ = ["UserIdentity", "drop_privileges_argv", "resolve_user"]


@dataclass(frozen=True)
class UserIdentity:
    """The ids a command drops to, and what its environment says about the user."""

    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str

    def environment(self) -> dict[str, str]:
        """The variables a login as this user would set (the rest is the server's)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def resolve_user(name: str) -> UserIdentity | None:
    """The ids to drop to, or None when no drop is needed (empty name, or already that user).

    Raises :class:`CannotStart` (rc 1 for an unknown user, 125 when its groups cannot
    be read), the results upstream gives.
    """
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        raise CannotStart(1, f"user not found: {name}") from None
    if entry.pw_uid == os.geteuid() and entry.pw_gid == os.getegid():
        return None
    try:
        groups = os.getgrouplist(name, entry.pw_gid)
    except OSError as exc:
        raise CannotStart(
            125, f"cannot switch to user {name}: cannot read its groups: {exc}"
        ) from None
    return UserIdentity(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


_DROP_AND_EXEC = """
import os, sys
name, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
groups = [int(g) for g in sys.argv[4].split(",") if g]
try:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise PermissionError(1, "ids did not change")
except OSError as exc:
    os.write(2, f"cannot switch to user {name}: {exc.strerror or exc}".encode())
    os._exit(125)
try:
    os.execv(sys.argv[5], sys.argv[5:])
except OSError as exc:
    os.write(2, f"cannot start {sys.argv[5]} as user {name}: {exc.strerror or exc}".encode())
    os._exit(127)
"""


def drop_privileges_argv(identity: UserIdentity) -> list[str]:
    """The helper's argv; append the command's argv to run it as ``identity``."""
    groups = ",".join(str(g) for g in identity.groups)
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _DROP_AND_EXEC,
        identity.name,
        str(identity.uid),
        str(identity.gid),
        groups,
    ]
