"""A string that does not show itself: for bearer tokens."""

from __future__ import annotations


class Secret:
    """Holds a secret string; ``repr``/``str`` print a mask, ``reveal()`` the value.

    Keeps tokens out of logs, tracebacks and reprs by default: only code that asks
    for the value with ``reveal()`` ever sees it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would carry the token into places (task queues, caches) it must not go.
        raise TypeError("a Secret cannot be pickled; read the token where it is used")
