"""The decoded Identify Controller and Identify Namespace records of ``wire.identify``.

They live apart from ``wire.identify``, which the backends and the host
import for its constants and decoders on every command: making a dataclass
compiles its ``__init__``, ``__repr__`` and ``__eq__`` at each start, about
9 ms for these two (90 and 38 fields), as much as half a bare interpreter
start.  ``wire.identify`` loads this module when a record is first made or
named (``wire.identify.IdentifyController`` is this class), and the classes
say they belong there (``__module__``), as they always did.

Field names, offsets and sizes: the layout tables in ``wire.identify``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# dataclass() reads the namespace of the module a class names as its own
# (the field annotations are strings): it must be loaded first.
import nvmecontrol.wire.identify

_HOME = "nvmecontrol.wire.identify"  # where users import them from (repr, pickle)


@dataclass(slots=True)
class IdentifyController:
    """Identify Controller data structure; every field defaults to zero/empty."""

    __module__ = _HOME

    vid: int = 0
    ssvid: int = 0
    sn: str = ""
    mn: str = ""
    fr: str = ""
    rab: int = 0
    ieee: int = 0  # 24-bit OUI, byte 73 is the least significant
    cmic: int = 0
    mdts: int = 0
    cntlid: int = 0
    ver: int = 0
    rtd3r: int = 0
    rtd3e: int = 0
    oaes: int = 0
    ctratt: int = 0
    rrls: int = 0
    cntrltype: int = 0
    fguid: bytes = bytes(16)
    crdt1: int = 0
    crdt2: int = 0
    crdt3: int = 0
    nvmsr: int = 0
    vwci: int = 0
    mec: int = 0
    oacs: int = 0
    acl: int = 0
    aerl: int = 0
    frmw: int = 0
    lpa: int = 0
    elpe: int = 0
    npss: int = 0
    avscc: int = 0
    apsta: int = 0
    wctemp: int = 0
    cctemp: int = 0
    mtfa: int = 0
    hmpre: int = 0
    hmmin: int = 0
    tnvmcap: int = 0
    unvmcap: int = 0
    rpmbs: int = 0
    edstt: int = 0
    dsto: int = 0
    fwug: int = 0
    kas: int = 0
    hctma: int = 0
    mntmt: int = 0
    mxtmt: int = 0
    sanicap: int = 0
    hmminds: int = 0
    hmmaxd: int = 0
    nsetidmax: int = 0
    endgidmax: int = 0
    anatt: int = 0
    anacap: int = 0
    anagrpmax: int = 0
    nanagrpid: int = 0
    pels: int = 0
    domainid: int = 0
    megcap: int = 0
    sqes: int = 0
    cqes: int = 0
    maxcmd: int = 0
    nn: int = 0
    oncs: int = 0
    fuses: int = 0
    fna: int = 0
    vwc: int = 0
    awun: int = 0
    awupf: int = 0
    icsvscc: int = 0
    nwpc: int = 0
    acwu: int = 0
    ocfs: int = 0
    sgls: int = 0
    mnan: int = 0
    maxdna: int = 0
    maxcna: int = 0
    oaqd: int = 0
    subnqn: str = ""
    ioccsz: int = 0
    iorcsz: int = 0
    icdoff: int = 0
    fcatt: int = 0
    msdbd: int = 0
    ofcs: int = 0
    dctype: int = 0
    raw: bytes = field(default=b"", repr=False, compare=False)



@dataclass(slots=True)
class IdentifyNamespace:
    """Identify Namespace data structure (NVM command set)."""

    __module__ = _HOME

    nsze: int = 0
    ncap: int = 0
    nuse: int = 0
    nsfeat: int = 0
    nlbaf: int = 0  # 0's based
    flbas: int = 0
    mc: int = 0
    dpc: int = 0
    dps: int = 0
    nmic: int = 0
    rescap: int = 0
    fpi: int = 0
    dlfeat: int = 0
    nawun: int = 0
    nawupf: int = 0
    nacwu: int = 0
    nabsn: int = 0
    nabo: int = 0
    nabspf: int = 0
    noiob: int = 0
    nvmcap: int = 0
    npwg: int = 0
    npwa: int = 0
    npdg: int = 0
    npda: int = 0
    nows: int = 0
    mssrl: int = 0
    mcl: int = 0
    msrc: int = 0
    nulbaf: int = 0
    anagrpid: int = 0
    nsattr: int = 0
    nvmsetid: int = 0
    endgid: int = 0
    nguid: bytes = bytes(16)
    eui64: bytes = bytes(8)
    # The nlbaf+1 formats in use (entries beyond them stay in ``raw``).
    lbaf: list[LbaFormat] = field(default_factory=list)
    raw: bytes = field(default=b"", repr=False, compare=False)

    def lba_format_index(self) -> int:
        """FLBAS bits 3:0, extended by bits 6:5 when more than 16 formats exist."""
        idx = self.flbas & 0x0F
        if self.nlbaf >= 16:
            idx |= ((self.flbas >> 5) & 0x3) << 4
        return idx

    def block_size(self) -> int:
        """Bytes per logical block of the current format (0 if it is not listed)."""
        idx = self.lba_format_index()
        if idx >= len(self.lbaf):
            return 0
        return 1 << self.lbaf[idx].lbads
