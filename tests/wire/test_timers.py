"""Keep-alive timing models, driven by a made-up clock (no sleeping)."""

from __future__ import annotations

import pytest

from nvmecontrol.wire.timers import (CONTROLLER_LOST, SEND_KEEP_ALIVE, KatoWatch, KeepAliveTimer,
                                     OverdueCommands)


def test_keep_alive_goes_out_every_half_kato():
    t = KeepAliveTimer(10, now=100.0)
    assert t.next_deadline() == 105.0
    assert t.on_timer(104.9) is None
    assert t.on_timer(105.0) == SEND_KEEP_ALIVE
    t.on_sent(105.0)
    t.on_answered(105.2)
    assert t.next_deadline() == pytest.approx(110.2)
    assert t.answer_deadline() is None


def test_a_controller_silent_for_kato_since_its_last_answer_is_lost():
    t = KeepAliveTimer(4, now=0.0)
    assert t.on_timer(2.0) == SEND_KEEP_ALIVE
    t.on_sent(2.0)
    # While one is outstanding no second is sent; the deadline is KATO after
    # the last answer (the start here), not KATO after sending: 1.5 KATO.
    assert t.next_deadline() == 4.0 and t.answer_deadline() == 4.0
    assert t.on_timer(3.99) is None
    assert t.on_timer(4.0) == CONTROLLER_LOST


def test_a_late_keep_alive_still_gets_its_minimum_answer_time():
    t = KeepAliveTimer(1, now=0.0)  # sent at 1 s (the minimum interval) = KATO
    assert t.on_timer(1.0) == SEND_KEEP_ALIVE
    t.on_sent(1.0)
    assert t.answer_deadline() == 2.0  # KATO + 1 s at most
    t.on_answered(1.5)
    assert t.next_deadline() == 2.5


def test_short_kato_is_not_a_keep_alive_storm():
    t = KeepAliveTimer(1, now=0.0)
    assert t.interval_s == 1.0
    assert t.on_timer(0.6) is None


def test_kato_zero_has_no_host_timer():
    with pytest.raises(ValueError):
        KeepAliveTimer(0, now=0.0)


def test_controller_watch_expires_after_silence():
    w = KatoWatch(2000, now=10.0)
    assert w.next_deadline() == 12.0
    assert not w.expired(11.9)
    w.on_activity(11.9)
    assert not w.expired(13.0)
    assert w.expired(13.9)


def test_controller_watch_with_kato_zero_never_expires():
    w = KatoWatch(0, now=0.0)
    assert w.next_deadline() is None
    assert not w.expired(1e9)


class Tag:
    """Stands for a command's tag (the session's request part)."""


def test_a_command_outstanding_at_every_look_for_kato_is_overdue():
    w = OverdueCommands(4, now=0.0)
    assert w.interval_s == 1.0 and w.next_deadline() == 1.0
    stuck, quick = Tag(), Tag()
    assert w.check(1.0, [stuck, quick]) == 0
    assert w.next_deadline() == 2.0
    assert w.check(2.0, [stuck]) == 0  # quick was answered
    assert w.check(4.9, [stuck, Tag()]) == 0  # 3.9 s since first seen
    assert w.check(5.0, [stuck]) == 1  # first seen at 1.0: KATO since


def test_commands_answered_between_looks_never_count():
    w = OverdueCommands(2, now=0.0)
    assert w.interval_s == 0.5
    for i in range(1, 40):  # a fresh set of commands at every look
        assert w.check(i * 0.5, [Tag() for _ in range(32)]) == 0


def test_a_new_tag_at_a_reused_address_is_a_new_command():
    w = OverdueCommands(2, now=0.0)
    first = Tag()
    w.check(0.5, [first])
    key = id(first)
    del first  # answered and gone; the watch still holds it, so no new
    second = Tag()  # tag can take its id while the watch remembers it
    assert id(second) != key
    assert w.check(3.0, [second]) == 0


def test_the_command_watch_needs_a_kato():
    with pytest.raises(ValueError):
        OverdueCommands(0, now=0.0)
