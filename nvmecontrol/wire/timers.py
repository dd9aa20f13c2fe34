"""Keep-alive timing as state machines that are told the time (no clock here).

NVMe Base 2.0, 3.9 (Keep Alive) and NVMe over Fabrics 1.1, 3.3.1 (KATO in
Connect): a host sends Keep Alive often enough that the controller's KATO
never expires, and a controller that hears nothing for KATO ends the
association.  Both sides are modelled the aioquic way: the owner asks
``next_deadline()``, sleeps until then (or until something happens), and
calls ``on_timer(now)``, which says what to do.  Tests drive them with a
made-up clock; the session and nvmfd drive them with ``time.monotonic``.
"""

from __future__ import annotations

# What on_timer asks the host's owner to do.
SEND_KEEP_ALIVE = "send"
CONTROLLER_LOST = "lost"


class KeepAliveTimer:
    """The host's side: when to send Keep Alive, and when the controller counts as lost.

    Keep Alive goes out KATO/2 after the last answer (as the Linux host does
    without traffic-based keep-alive), so one lost or late command still
    leaves the controller's KATO unexpired.  Nothing answered for KATO since
    the last answer means the controller has ended the association by its
    own rule (or is frozen): it is lost then, within KATO of going silent
    (the Linux host gives its Keep Alive a whole KATO more: 1.5 KATO).  A
    Keep Alive always has at least ``min_answer_s`` to be answered.
    """

    def __init__(self, kato_s: float, now: float, *, min_interval_s: float = 1.0,
                 min_answer_s: float = 1.0):
        if kato_s <= 0:
            raise ValueError("keep-alive needs a KATO above 0")
        self.kato_s = kato_s
        # Below one second the traffic would be all keep-alives; KATO is at
        # least one second on the wire anyway (milliseconds, rounded up).
        self.interval_s = max(min_interval_s, kato_s / 2)
        self.min_answer_s = min_answer_s
        self.answered_at = now  # the association's start counts as an answer
        self.next_send = now + self.interval_s
        self.sent_at: float | None = None  # a Keep Alive is outstanding since

    def next_deadline(self) -> float:
        if self.sent_at is not None:
            return self.answer_deadline()
        return self.next_send

    def answer_deadline(self) -> float | None:
        """By when the outstanding Keep Alive must be answered (None: none outstanding)."""
        if self.sent_at is None:
            return None
        return max(self.answered_at + self.kato_s, self.sent_at + self.min_answer_s)

    def on_timer(self, now: float) -> str | None:
        if self.sent_at is not None:
            return CONTROLLER_LOST if now >= self.answer_deadline() else None
        return SEND_KEEP_ALIVE if now >= self.next_send else None

    def on_sent(self, now: float) -> None:
        self.sent_at = now

    def on_answered(self, now: float) -> None:
        self.sent_at = None
        self.answered_at = now
        self.next_send = now + self.interval_s


class OverdueCommands:
    """The host's other KATO rule: any command unanswered for KATO means the controller is lost.

    The data path stamps nothing per command (that would cost on every
    I/O): the owner shows this watch the tags of every outstanding command
    every ``interval_s``, and a tag seen outstanding at every look for KATO
    is overdue.  A command is therefore noticed between KATO and KATO plus
    one interval after it was sent.  Tags are held (not their ``id``), so
    a finished command's tag cannot be mistaken for a new one's.
    """

    def __init__(self, kato_s: float, now: float, *, interval_s: float | None = None):
        if kato_s <= 0:
            raise ValueError("the command watch needs a KATO above 0")
        self.kato_s = kato_s
        self.interval_s = interval_s if interval_s is not None else min(1.0, kato_s / 4)
        self.next_check = now + self.interval_s
        self._first_seen: dict[int, tuple] = {}  # id(tag) -> (tag, first seen outstanding)

    def next_deadline(self) -> float:
        return self.next_check

    def check(self, now: float, outstanding) -> int:
        """Look at the commands ``outstanding`` now; how many are overdue."""
        seen = self._first_seen
        current = {}
        overdue = 0
        for tag in outstanding:
            key = id(tag)
            first = seen.get(key)
            since = first[1] if first is not None and first[0] is tag else now
            current[key] = (tag, since)
            if now - since >= self.kato_s:
                overdue += 1
        self._first_seen = current
        self.next_check = now + self.interval_s
        return overdue


class KatoWatch:
    """The controller's side: the association ends when the host is silent for KATO.

    Any command from the host counts as activity (NVMe 2.0, 3.9.1: the
    Keep Alive Timer restarts on a Keep Alive command or, with TBKAS, any
    command); KATO 0 disables the timer.
    """

    def __init__(self, kato_ms: int, now: float):
        self.kato_ms = kato_ms
        self.last_activity = now

    def on_activity(self, now: float) -> None:
        self.last_activity = now

    def next_deadline(self) -> float | None:
        if not self.kato_ms:
            return None
        return self.last_activity + self.kato_ms / 1000.0

    def expired(self, now: float) -> bool:
        deadline = self.next_deadline()
        return deadline is not None and now >= deadline
