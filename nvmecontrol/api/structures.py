"""The decoded structures the API returns, with their decoders and constants.

Identify Controller and Namespace (NVMe 2.0 Base, 5.17.2), the log pages
(5.16: Error Information, SMART / Health, Firmware Slot, Changed Namespace
List, Commands Supported and Effects, ANA), the discovery log (NVMe-oF 1.1,
5.3), the Reservation Status data structure (NVM Command Set 1.0, 4.6), the
status field's JSON form, and what ``devlist`` reports of a controller.
A program that prints what :mod:`nvmecontrol.api.admin` or
:mod:`nvmecontrol.api.discovery` returned (the CLI's renderers do) finds
every name it needs here.

The names are loaded on first use, each from the one wire module that
defines it, so a renderer of one structure does not load the others.
"""

from __future__ import annotations

from nvmecontrol.api._lazy import lazy_names

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

_IDENTIFY = "nvmecontrol.wire.identify"
_DISCOVERY = "nvmecontrol.wire.discovery"
_LOGPAGES = "nvmecontrol.wire.logpages"
_RESERVATIONS = "nvmecontrol.wire.reservations"
_STATUS = "nvmecontrol.wire.status"
_MODEL = "nvmecontrol.backends.model"

# name -> the module that defines it.
_WHERE = {
    **dict.fromkeys((
        "IdentifyController", "IdentifyNamespace", "decode_identify_controller",
        "decode_identify_namespace", "FLBAS_EXTENDED", "NSFEAT_OPTPERF", "LPA_SMART_PER_NS",
        "NSID_BROADCAST", "IDENTIFY_DATA_SIZE", "CNS_CONTROLLER", "CNS_NAMESPACE",
    ), _IDENTIFY),
    **dict.fromkeys((
        "DiscoveryHeader", "DiscoveryLogEntry", "decode_discovery_log", "AdrFam", "RdmaCms",
        "RdmaPrType", "RdmaQpType", "SubType", "TcpSecType", "TrType", "CNTLID_DYNAMIC",
        "CNTLID_STATIC_ANY", "EFLAGS_DUPRETINFO", "EFLAGS_EPCSD", "EFLAGS_NCC",
        "TREQ_DISABLE_SQFLOW", "TREQ_SECURE_CHANNEL_MASK",
    ), _DISCOVERY),
    **dict.fromkeys((
        "LogPage", "AnaLog", "AnaState", "ChangedNsList", "CommandEffectsLog", "ErrorLogEntry",
        "FirmwareSlotLog", "SmartLog", "ana_log_size", "error_log_size", "decode_ana_log",
        "decode_changed_ns_list", "decode_cmd_effects_log", "decode_error_log",
        "decode_fw_slot_log", "decode_smart_log", "ANA_HEADER_SIZE", "CE_CCC", "CE_CSE_MASK",
        "CE_CSE_SHIFT", "CE_CSUPP", "CE_LBCC", "CE_NCC", "CE_NIC", "CE_UUID",
        "CHANGED_NS_LOG_SIZE", "CMD_EFFECTS_LOG_SIZE", "CW_READ_ONLY", "CW_RELIABILITY",
        "CW_SPARE", "CW_TEMPERATURE", "CW_VOLATILE_BACKUP", "DEVICE_SELF_TEST_LOG_SIZE",
        "FW_SLOT_LOG_SIZE", "FW_SLOTS", "RESERVATION_NOTIFICATION_LOG_SIZE",
        "SANITIZE_STATUS_LOG_SIZE", "SMART_LOG_SIZE",
    ), _LOGPAGES),
    **dict.fromkeys((
        "ReservationStatus", "ResvType", "decode_reservation_status", "RCSTS_HOLDER",
    ), _RESERVATIONS),
    "status_to_json": _STATUS,
    **dict.fromkeys(("ControllerInfo", "NamespaceInfo"), _MODEL),
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, _WHERE)


if TYPE_CHECKING:  # what type checkers see: the names, eagerly
    from nvmecontrol.backends.model import ControllerInfo, NamespaceInfo
    from nvmecontrol.wire.discovery import (CNTLID_DYNAMIC, CNTLID_STATIC_ANY, EFLAGS_DUPRETINFO,
                                            EFLAGS_EPCSD, EFLAGS_NCC, TREQ_DISABLE_SQFLOW,
                                            TREQ_SECURE_CHANNEL_MASK, AdrFam, DiscoveryHeader,
                                            DiscoveryLogEntry, RdmaCms, RdmaPrType, RdmaQpType,
                                            SubType, TcpSecType, TrType, decode_discovery_log)
    from nvmecontrol.wire.identify import (CNS_CONTROLLER, CNS_NAMESPACE, FLBAS_EXTENDED,
                                           IDENTIFY_DATA_SIZE, LPA_SMART_PER_NS, NSFEAT_OPTPERF,
                                           NSID_BROADCAST, IdentifyController, IdentifyNamespace,
                                           decode_identify_controller, decode_identify_namespace)
    from nvmecontrol.wire.logpages import (
        ANA_HEADER_SIZE, CE_CCC, CE_CSE_MASK, CE_CSE_SHIFT, CE_CSUPP, CE_LBCC, CE_NCC, CE_NIC,
        CE_UUID, CHANGED_NS_LOG_SIZE, CMD_EFFECTS_LOG_SIZE, CW_READ_ONLY, CW_RELIABILITY,
        CW_SPARE, CW_TEMPERATURE, CW_VOLATILE_BACKUP, DEVICE_SELF_TEST_LOG_SIZE, FW_SLOT_LOG_SIZE,
        FW_SLOTS, RESERVATION_NOTIFICATION_LOG_SIZE, SANITIZE_STATUS_LOG_SIZE, SMART_LOG_SIZE,
        AnaLog, AnaState, ChangedNsList, CommandEffectsLog, ErrorLogEntry, FirmwareSlotLog,
        LogPage, SmartLog, ana_log_size, decode_ana_log, decode_changed_ns_list,
        decode_cmd_effects_log, decode_error_log, decode_fw_slot_log, decode_smart_log,
        error_log_size)
    from nvmecontrol.wire.reservations import (RCSTS_HOLDER, ReservationStatus, ResvType,
                                               decode_reservation_status)
    from nvmecontrol.wire.status import status_to_json
