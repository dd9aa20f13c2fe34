"""One receive buffer for batched stream decoders (NVMe/TCP PDUs, NBD requests).

The caller fills it with ``recv_into(get_buffer())`` then ``buffer_updated(n)``,
as an asyncio BufferedProtocol would; the decoder cuts complete messages
from ``_start``, handing out memoryview slices that stay valid until the
next ``get_buffer``/``feed``.  ``_need`` is what the next message needs in
total, so a large one gets room in one step.

The buffer is anonymous memory (``mmap``), not a ``bytearray``: a bytearray
is zero-filled when created, so every connection paid its whole buffer
(1 MiB) in resident memory before receiving a byte; mapped pages cost
nothing until a receive writes to them, and with the buffer rewound to its
start whenever it is empty, a connection carrying small PDUs only ever
touches its first pages.  ``_buf`` supports the buffer protocol
(``struct.unpack_from``) and slicing it gives ``bytes``.
"""

from __future__ import annotations

import mmap


def _anonymous(size: int) -> mmap.mmap:
    # MAP_PRIVATE: a forked child must not share (or see) our receive buffer.
    # An empty mapping is refused by mmap; the buffer grows from one byte.
    return mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE)


class ReceiveBuffer:
    def __init__(self, buffer_size: int, need: int):
        self._buf = _anonymous(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._need = need  # bytes the next message needs in total

    def get_buffer(self, min_size: int = 65536) -> memoryview:
        """Free space to receive into; compacts earlier data (invalidating old views)."""
        pending = self._end - self._start
        if not pending:
            self._start = self._end = 0
        size = len(self._buf)
        want = max(min_size, self._need - pending)
        if self._start and size - self._end < want:
            self._view[:pending] = self._view[self._start:self._end]
            self._start, self._end = 0, pending
        if size - self._end < want:
            # A new mapping: views handed out earlier keep the old one alive
            # (and valid) until they are dropped; it is unmapped then.
            grown = _anonymous(max(size * 2, self._end + want))
            view = memoryview(grown)
            view[:pending] = self._view[self._start:self._end]
            self._buf = grown
            self._view = view
            self._start, self._end = 0, pending
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes

    def feed(self, data) -> None:
        """Copy ``data`` into the buffer (tests, leftovers of a handshake)."""
        n = len(data)
        self.get_buffer(n)[:n] = data
        self._end += n

    @property
    def pending(self) -> int:
        """Bytes received but not yet decoded."""
        return self._end - self._start
