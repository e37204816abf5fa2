"""The command hash RemSvc puts on the wire."""

from __future__ import annotations

import zlib


def command_hash(cmd: str) -> str:
    """CRC-32 (zlib / ISO-HDLC) of the UTF-8 bytes of ``cmd``, as 8 lowercase hex digits.

    >>> command_hash("123456789")
    'cbf43926'
    >>> command_hash("")
    '00000000'
    """
    return f"{zlib.crc32(cmd.encode('utf-8')) & 0xFFFFFFFF:08x}"
