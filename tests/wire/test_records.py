"""wire.records.Record: what the slots records keep of the dataclasses they replaced."""

from __future__ import annotations

import pytest

from nvmecontrol.wire.records import Record


class Base(Record):
    __slots__ = ("a", "b")

    def __init__(self, a: int, b: list | None = None):
        self.a = a
        self.b = [] if b is None else b


class Child(Base):
    __slots__ = ("raw",)
    _NOT_COMPARED = ("raw",)

    def __init__(self, a: int, b: list | None = None, raw: bytes = b""):
        super().__init__(a, b)
        self.raw = raw


def test_fields_in_order_through_inheritance():
    assert Child._fields == ("a", "b", "raw")  # a tuple, as a namedtuple's
    assert Child(1, [2], b"x")._asdict() == {"a": 1, "b": [2], "raw": b"x"}


def test_positional_match_patterns_as_with_the_dataclasses():
    match Child(1, [2], b"x"):
        case Child(a, b, raw):
            assert (a, b, raw) == (1, [2], b"x")
        case _:
            pytest.fail("no match")


def test_repr_names_the_class_and_compared_fields():
    assert repr(Base(1, [2])) == "Base(a=1, b=[2])"
    assert repr(Child(1, raw=b"x")) == "Child(a=1, b=[])"


def test_equality_field_by_field_and_same_class_only():
    assert Base(1, [2]) == Base(1, [2])
    assert Base(1, [2]) != Base(1, [3])
    assert Child(1) != Base(1)
    assert Child(1, raw=b"x") == Child(1, raw=b"y")  # raw is not compared
    with pytest.raises(TypeError):
        hash(Base(1))


def test_replace_copies_with_changes_and_keeps_the_original():
    b = Base(1, [2])
    c = b._replace(a=5)
    assert (c.a, c.b, b.a) == (5, [2], 1) and type(c) is Base
    assert b._replace() == b and b._replace() is not b


def test_defaults_are_not_shared():
    x, y = Base(1), Base(1)
    x.b.append(1)
    assert y.b == []
