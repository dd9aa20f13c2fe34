"""Per-port parameters: what a port's ``param`` group of the configuration sets.

nvmetcli saves a port's configfs ``param_*`` attributes in a ``"param"``
object without the prefix; nvmfd honours the ones that limit what a host
may send on a new connection of that port, and adds one of its own:

* ``inline_data_size``: in-capsule data accepted on an I/O queue (the
  kernel's ``param_inline_data_size``), advertised in Identify IOCCSZ;
  more than ``IN_CAPSULE_DATA`` is served as that, and the admin queue
  keeps the 8 KiB NVMe/TCP asks for (Connect data travels in-capsule).
* ``max_queue_size``: entries per queue (the kernel's
  ``param_max_queue_size``), advertised in CAP.MQES and enforced on
  Connect's SQSIZE.  ``MIN_QUEUE_SIZE`` to ``MQES + 1``.
* ``maxh2cdata``: the largest H2CData PDU, sent in ICResp (nvmfd only; the
  kernel has it fixed).  A multiple of 4, 4096 or more (NVMe/TCP 3.6.2.3).
* ``pi_enable``: protection information; only ``0`` (nvmfd has none, and
  refuses rather than serve without what was asked).

Values apply to connections accepted after they are set (a reload changes
them for new connections only, as ICResp and CAP are negotiated once).
Other keys are kept and saved again, unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvmecontrol.errors import UsageError
from nvmecontrol.target import constants as K
from nvmecontrol.target.defaults import ConfigRefused  # noqa: F401 (its users import it here)

# The kernel's NVMET_MIN_QUEUE_SIZE: a queue shorter than this gains
# nothing and costs hosts round trips.
MIN_QUEUE_SIZE = 16
# NVMe/TCP 3.6.2.3: MAXH2CDATA is at least 4096 and a multiple of 4 bytes.
MIN_MAXH2CDATA = 4096


@dataclass(frozen=True, slots=True)
class PortParams:
    inline_data_size: int = K.IN_CAPSULE_DATA
    max_queue_size: int = K.MQES + 1
    maxh2cdata: int = K.MAXH2CDATA

    @property
    def mqes(self) -> int:
        """CAP.MQES for controllers of this port (0's based)."""
        return self.max_queue_size - 1

    @property
    def ioccsz(self) -> int:
        """Identify IOCCSZ, in 16-byte units: the SQE and the in-capsule data."""
        return (64 + self.inline_data_size) // 16


DEFAULT_PORT_PARAMS = PortParams()


def _number(param: dict, key: str, where: str) -> int | None:
    value = param.get(key)
    if value in (None, ""):
        return None
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        raise UsageError(f'{where}: param.{key} "{value}" is not a number') from None


def parse_port_params(param: dict, where: str) -> PortParams:
    """The checked parameters of one port's ``param`` group."""
    pi = str(param.get("pi_enable", "0")).strip().lower()
    if pi not in ("0", "", "false", "no", "n"):
        raise ConfigRefused(f"{where}: param.pi_enable {param['pi_enable']!r}: protection "
                            "information is not supported by nvmfd")
    out = {}
    inline = _number(param, "inline_data_size", where)
    if inline is not None:
        # The kernel's -1 means "the transport's default".
        if inline == -1:
            inline = K.IN_CAPSULE_DATA
        if inline < 0:
            raise UsageError(f"{where}: param.inline_data_size {inline} is negative")
        # More than nvmfd takes (kernel configs often say 16384) is served as
        # what it takes: hosts send only what IOCCSZ advertises.  IOCCSZ is
        # in 16-byte units, so is what is accepted.
        out["inline_data_size"] = min(inline, K.IN_CAPSULE_DATA) // 16 * 16
    qsize = _number(param, "max_queue_size", where)
    if qsize is not None:
        if not MIN_QUEUE_SIZE <= qsize <= K.MQES + 1:
            raise UsageError(f"{where}: param.max_queue_size {qsize} out of range "
                             f"{MIN_QUEUE_SIZE}..{K.MQES + 1}")
        out["max_queue_size"] = qsize
    maxh2c = _number(param, "maxh2cdata", where)
    if maxh2c is not None:
        if not MIN_MAXH2CDATA <= maxh2c <= K.MAXH2CDATA or maxh2c % 4:
            raise UsageError(f"{where}: param.maxh2cdata {maxh2c} must be a multiple of 4 "
                             f"from {MIN_MAXH2CDATA} to {K.MAXH2CDATA}")
        out["maxh2cdata"] = maxh2c
    return PortParams(**out) if out else DEFAULT_PORT_PARAMS
