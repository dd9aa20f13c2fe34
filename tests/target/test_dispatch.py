"""The command dispatch tables of nvmfd cover what each controller kind accepts."""

from __future__ import annotations

from nvmecontrol.target import controller as C
from nvmecontrol.target import io as IO
from nvmecontrol.wire.nvm import NvmOpc


def test_every_accepted_admin_opcode_has_a_handler():
    assert (C._IO_ADMIN | C._DISC_ADMIN) <= C._ADMIN_HANDLERS.keys()
    for handler in C._ADMIN_HANDLERS.values():
        assert callable(handler)


def test_io_opcodes_are_plain_ints_with_the_spec_values():
    # The I/O path compares opcodes with plain ints (an IntEnum costs more).
    for name, opc in [("_READ", NvmOpc.READ), ("_WRITE", NvmOpc.WRITE), ("_FLUSH", NvmOpc.FLUSH),
                      ("_WRITE_ZEROES", NvmOpc.WRITE_ZEROES),
                      ("_DSM", NvmOpc.DATASET_MANAGEMENT)]:
        value = getattr(IO, name)
        assert type(value) is int and value == opc
