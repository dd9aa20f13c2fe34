"""CRC32C (Castagnoli) for NVMe/TCP header and data digests (NVMe/TCP 3.6.1.2).

The digest is the standard CRC32C (init ~0, reflected, final xor) stored
little-endian after the header or the data.  fastcrc computes it in hardware
and accepts memoryviews, so payloads are digested without a copy.
"""

import struct

from fastcrc import crc32 as _crc32

_LE32 = struct.Struct("<I")

crc32c = _crc32.iscsi


def digest(data) -> bytes:
    """The 4-byte little-endian digest of ``data`` (bytes-like)."""
    return _LE32.pack(crc32c(data))


def check(data, stored) -> bool:
    """True when the little-endian digest ``stored`` matches ``data``."""
    return _LE32.unpack_from(stored)[0] == crc32c(data)
