"""NVMe Qualified Names: validation, the UUID form and the discovery NQN.

Implements the NVMe Base Specification section "NVMe Qualified Names":

* ``nqn.yyyy-mm.reverse-domain[:user-string]`` where ``yyyy-mm`` is a date
  on which the naming authority owned the domain;
* the UUID form ``nqn.2014-08.org.nvmexpress:uuid:<RFC 4122 UUID text>``;
* the well-known discovery NQN ``nqn.2014-08.org.nvmexpress.discovery``;
* at most 223 bytes of UTF-8, never a NUL (the name travels NUL-terminated
  in 256-byte fields such as the Connect data SUBNQN/HOSTNQN).

Two levels of checking, because real peers are laxer than the spec:

* ``strict=True`` applies every rule above.  Host NQNs are checked this way
  (by default), since we mint or read them ourselves and a malformed one is
  a local configuration error worth stopping on.
* ``strict=False`` only requires a non-empty string of at most 223 bytes
  without NUL.  Subsystem NQNs given by the user to ``connect`` are checked
  this way, silently: the Linux kernel target accepts any subsystem name
  (the FreeBSD Journal example uses ``nvme-test-target``) and we must be
  able to reach it.

Comparison of NQNs is exact (case-sensitive), as peers compare them with
``strcmp``.
"""

from __future__ import annotations

import re
import uuid

from nvmecontrol.errors import UsageError

# Base spec: "The NQN ... is limited to 223 bytes in length" (UTF-8, not
# counting the NUL terminator).  The limit matches iSCSI names (RFC 3720),
# which NQNs were modelled on; the 256-byte wire field leaves room for it.
NQN_MAX_BYTES = 223

NQN_PREFIX = "nqn."
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"

# The spec does not bound the year; the format fixes four digits.  These
# bounds only catch typos such as 0214 or 9014: no real domain registration
# predates 1970 (DNS itself dates from 1985), and a fixed upper bound keeps
# validity independent of the clock.
NQN_MIN_YEAR = 1970
NQN_MAX_YEAR = 2999

# RFC 1035 label length limit.
DNS_LABEL_MAX = 63

_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})\.")
_LABEL_RE = re.compile(r"[A-Za-z0-9-]+")
_UUID_RE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
# nvme-cli 1.x and early libnvme formatted the systemd app-specific machine
# ID with SD_ID128_FORMAT_STR (32 hex digits, no hyphens) into generated
# host NQNs.  Such /etc/nvme/hostnqn files exist and are registered in
# targets' allowed-hosts lists, so rejecting them would lock those hosts out.
_UUID_NOHYPHEN_RE = re.compile(r"[0-9A-Fa-f]{32}")

_SHOWN_MAX = 80


def _raw_byte(c: str) -> int:
    """The byte a surrogate-escaped character stands for (U+DC80-U+DCFF), else its code."""
    return ord(c) - 0xDC00 if 0xDC80 <= ord(c) <= 0xDCFF else ord(c)


def quote_nqn(s: str) -> str:
    """The NQN as quoted in a message: control characters and bytes that were
    not UTF-8 escaped, long names cut."""
    text = "".join(
        c if c.isprintable() else f"\\x{_raw_byte(c):02x}" if _raw_byte(c) < 0x100
        else f"\\u{ord(c):04x}"
        for c in s
    )
    if len(text) > _SHOWN_MAX:
        text = text[:_SHOWN_MAX] + "..."
    return f'"{text}"'


def _label_problem(label: str, domain: str) -> str | None:
    if not label:
        return f'domain "{domain}" has an empty label'
    if len(label) > DNS_LABEL_MAX:
        return f'domain label "{label}" is longer than {DNS_LABEL_MAX} characters'
    if not _LABEL_RE.fullmatch(label):
        bad = next(c for c in label if not _LABEL_RE.fullmatch(c))
        return (
            f'domain label "{label}" contains {bad!r}; '
            'only letters, digits and "-" are allowed'
        )
    if label.startswith("-") or label.endswith("-"):
        return f'domain label "{label}" starts or ends with "-"'
    return None


def nqn_problem(s: str, *, strict: bool = True) -> str | None:
    """The first rule ``s`` breaks, as a phrase for a message, or None if valid."""
    if not s:
        return "is empty"
    nul = s.find("\0")
    if nul >= 0:
        return f"contains a NUL character at offset {nul}"
    try:
        size = len(s.encode("utf-8"))
    except UnicodeEncodeError as e:
        # A command line argument that was not UTF-8 (surrogate-escaped bytes).
        return f"is not UTF-8 (byte {_raw_byte(s[e.start]):#04x} at offset {e.start})"
    for i, c in enumerate(s):
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            return f"contains a control character ({ord(c):#04x}) at offset {i}"
    if size > NQN_MAX_BYTES:
        return f"is {size} bytes long in UTF-8, the limit is {NQN_MAX_BYTES}"
    if not strict:
        return None

    if not s.startswith(NQN_PREFIX):
        return f'does not start with "{NQN_PREFIX}"'
    rest = s[len(NQN_PREFIX):]
    date = _DATE_RE.match(rest)
    if date is None:
        return f'expected a date "yyyy-mm." after "{NQN_PREFIX}"'
    year, month = int(date.group(1)), int(date.group(2))
    if not NQN_MIN_YEAR <= year <= NQN_MAX_YEAR:
        return f"year {date.group(1)} is not {NQN_MIN_YEAR}-{NQN_MAX_YEAR}"
    if not 1 <= month <= 12:
        return f"month {date.group(2)} is not 01-12"

    domain, colon, user = rest[date.end():].partition(":")
    if not domain:
        return "has no reverse domain name after the date"
    for label in domain.split("."):
        problem = _label_problem(label, domain)
        if problem:
            return problem
    if colon and not user:
        return 'has nothing after ":"'

    if s.startswith(UUID_NQN_PREFIX):
        text = s[len(UUID_NQN_PREFIX):]
        if not (_UUID_RE.fullmatch(text) or _UUID_NOHYPHEN_RE.fullmatch(text)):
            return (
                f'"{text}" after ":uuid:" is not a UUID '
                "(expected 8-4-4-4-12 hex digits)"
            )
    return None


def validate_nqn(s: str, *, strict: bool = True, what: str = "NQN") -> None:
    """Raise UsageError naming the violated rule when ``s`` is not a valid NQN.

    ``what`` names the role in the message (``"host NQN"``, ``"subsystem NQN"``).
    """
    problem = nqn_problem(s, strict=strict)
    if problem:
        raise UsageError(f"invalid {what} {quote_nqn(s)}: {problem}")


def is_valid_nqn(s: str, *, strict: bool = True) -> bool:
    """True when ``s`` passes :func:`validate_nqn` at the given strictness."""
    return nqn_problem(s, strict=strict) is None


def looks_like_nqn(s: str) -> bool:
    """True for strings meant as an NQN rather than a device name (nvme0, nda0).

    Only the ``nqn.`` prefix counts, never the length: FreeBSD's disconnect
    mistook device names for NQNs.  The discovery NQN has the prefix too.
    """
    return s.startswith(NQN_PREFIX)


def is_discovery_nqn(s: str) -> bool:
    """True only for the well-known discovery NQN (exact match)."""
    return s == DISCOVERY_NQN


def parse_uuid(text: str) -> uuid.UUID:
    """Parse canonical RFC 4122 UUID text (8-4-4-4-12 hex digits, any case).

    Stricter than ``uuid.UUID()``, which also takes braces, ``urn:uuid:``
    and hyphenless text; HostIDs in files and on command lines are the
    canonical form.  Raises ValueError; callers add the context.
    """
    if not _UUID_RE.fullmatch(text):
        raise ValueError(f'"{text}" is not a UUID (expected 8-4-4-4-12 hex digits)')
    return uuid.UUID(text)


def nqn_from_uuid(u: uuid.UUID | str) -> str:
    """The UUID-form NQN for ``u`` (lowercase UUID text, as nvme-cli writes it)."""
    if isinstance(u, str):
        try:
            u = parse_uuid(u)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return UUID_NQN_PREFIX + str(u)


def uuid_from_nqn(nqn: str) -> uuid.UUID | None:
    """The UUID inside a UUID-form NQN, or None for any other NQN."""
    if not nqn.startswith(UUID_NQN_PREFIX):
        return None
    text = nqn[len(UUID_NQN_PREFIX):]
    if _UUID_RE.fullmatch(text) or _UUID_NOHYPHEN_RE.fullmatch(text):
        return uuid.UUID(text)
    return None
