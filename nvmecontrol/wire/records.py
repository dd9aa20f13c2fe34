"""Records with ``__slots__``: the part of a dataclass that start-up can afford.

``import dataclasses`` loads inspect, ast and dis, about as long as a bare
interpreter start here, and every ``@dataclass`` runs generated code when its
module is imported; the records that ``devlist`` and ``discover`` load are
plain classes instead (issue 13).  A subclass of :class:`Record` lists its
fields in ``__slots__`` (in order) and writes its ``__init__``; this gives it
what the dataclass gave: the ``Name(field=value, ...)`` repr, equality field
by field with a record of the same class, no hash (they are mutable),
positional ``match`` patterns (``__match_args__``), and ``_fields``,
``_asdict`` and ``_replace`` as namedtuples spell them.  Fields named in
``_NOT_COMPARED`` are left out of equality and the repr (raw buffers).
``dataclasses.replace``/``asdict``/``fields`` do not apply to them: that is
what ``_replace``/``_asdict``/``_fields`` are for.
"""

from __future__ import annotations


class Record:
    """Base of the slots records: repr, equality and copies over ``__slots__``."""

    __slots__ = ()
    _NOT_COMPARED: tuple[str, ...] = ()
    _fields: tuple[str, ...] = ()  # every field in order, base classes' first

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            names.extend(klass.__dict__.get("__slots__", ()))
        cls._fields = cls.__match_args__ = tuple(names)

    def _compared(self) -> tuple:
        skip = self._NOT_COMPARED
        return tuple(getattr(self, n) for n in self._fields if n not in skip)

    def __repr__(self) -> str:
        skip = self._NOT_COMPARED
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields if n not in skip)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()

    __hash__ = None  # mutable

    def _asdict(self) -> dict:
        """Field -> value, in field order (shallow)."""
        return {n: getattr(self, n) for n in self._fields}

    def _replace(self, **changes):
        """A copy with ``changes`` (keywords of ``__init__``)."""
        return type(self)(**{**self._asdict(), **changes})
