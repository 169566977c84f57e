"""Typed builder for ServiceNow encoded queries.

The instance silently ignores a clause it cannot parse, so a malformed query can select every row. Queries are
therefore only built from code: field names must be plain identifiers (dot-walk allowed) and values may not contain
the characters that change a query's structure (`^` separates clauses, newlines end it, `,` separates IN items).
A refused value raises `QueryValueError` naming the field - injection is impossible by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_FORBIDDEN = ("^", "\n", "\r")
# Operators `where()` accepts; IN/NOT IN and ISEMPTY/ISNOTEMPTY have their own methods.
_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">=", "LIKE", "NOTLIKE", "STARTSWITH", "ENDSWITH"})


class QueryValueError(ValueError):
    """A field name or value would change the structure of an encoded query."""


def _check_field(name: str) -> str:
    if not _FIELD.fullmatch(name):  # fullmatch: `$` alone would accept a trailing newline
        raise QueryValueError(f"invalid field name {name!r}: use letters, digits, '_' and one '.' for dot-walking")
    return name


def _check_value(field_name: str, value: object, *, in_list: bool = False) -> str:
    text = str(value)
    for bad in _FORBIDDEN:
        if bad in text:
            raise QueryValueError(f"value for {field_name!r} contains {bad!r}, which would change the query: {text!r}")
    if in_list and "," in text:
        raise QueryValueError(f"IN value for {field_name!r} contains ',', which would split it: {text!r}")
    return text


@dataclass(frozen=True)
class Query:
    """Immutable: every method returns a new Query, so a shared base query can't be mutated by accident.

    >>> Query().eq("state", "-2").eq("approval", "approved").order_by("number").encode()
    'state=-2^approval=approved^ORDERBYnumber'
    >>> Query().eq("a", "1").or_().eq("b", "2").encode()
    'a=1^ORb=2'
    """

    clauses: tuple[str, ...] = ()
    orders: tuple[str, ...] = ()
    _next_joiner: str = field(default="^", repr=False)

    # -- combinators --------------------------------------------------------------------------
    def _add(self, clause: str) -> Query:
        joined = clause if not self.clauses else f"{self._next_joiner}{clause}"
        return Query((*self.clauses, joined), self.orders, "^")

    def or_(self) -> Query:
        """The next condition is OR-ed with the previous one (`^OR`)."""
        if not self.clauses:
            raise QueryValueError("or_() needs a condition before it")
        return Query(self.clauses, self.orders, "^OR")

    def new_query(self) -> Query:
        """Start an alternative group (`^NQ`): rows matching either group are returned."""
        if not self.clauses:
            raise QueryValueError("new_query() needs a condition before it")
        return Query(self.clauses, self.orders, "^NQ")

    # -- conditions ---------------------------------------------------------------------------
    def where(self, name: str, op: str, value: object = "") -> Query:
        if op not in _OPERATORS:
            raise QueryValueError(f"unknown operator {op!r} for {name!r}: use one of {sorted(_OPERATORS)}")
        return self._add(f"{_check_field(name)}{op}{_check_value(name, value)}")

    def eq(self, name: str, value: object) -> Query:
        return self.where(name, "=", value)

    def ne(self, name: str, value: object) -> Query:
        return self.where(name, "!=", value)

    def gt(self, name: str, value: object) -> Query:
        return self.where(name, ">", value)

    def ge(self, name: str, value: object) -> Query:
        return self.where(name, ">=", value)

    def lt(self, name: str, value: object) -> Query:
        return self.where(name, "<", value)

    def le(self, name: str, value: object) -> Query:
        return self.where(name, "<=", value)

    def like(self, name: str, value: object) -> Query:
        return self.where(name, "LIKE", value)

    def not_like(self, name: str, value: object) -> Query:
        return self.where(name, "NOTLIKE", value)

    def startswith(self, name: str, value: object) -> Query:
        return self.where(name, "STARTSWITH", value)

    def endswith(self, name: str, value: object) -> Query:
        return self.where(name, "ENDSWITH", value)

    def in_(self, name: str, values: Iterable[object]) -> Query:
        items = [_check_value(name, v, in_list=True) for v in values]
        if not items:
            raise QueryValueError(f"IN for {name!r} needs at least one value")
        return self._add(f"{_check_field(name)}IN{','.join(items)}")

    def not_in(self, name: str, values: Iterable[object]) -> Query:
        items = [_check_value(name, v, in_list=True) for v in values]
        if not items:
            raise QueryValueError(f"NOT IN for {name!r} needs at least one value")
        return self._add(f"{_check_field(name)}NOT IN{','.join(items)}")

    def isempty(self, name: str) -> Query:
        return self._add(f"{_check_field(name)}ISEMPTY")

    def isnotempty(self, name: str) -> Query:
        return self._add(f"{_check_field(name)}ISNOTEMPTY")

    def and_stored(self, condition: str) -> Query:
        """This query AND a condition the instance stores itself (a schedule's `condition` over cmdb_ci): read from
        ServiceNow, never from a caller, and passed as written. Its `^NQ` groups each get this query's clauses, so
        `sys_id=X` AND `a^NQb` is `sys_id=X^a^NQsys_id=X^b`; its own ORDERBY clauses are dropped."""
        if not self.clauses or any(c.startswith("^NQ") or c.startswith("^OR") for c in self.clauses[1:]):
            raise QueryValueError("and_stored() needs a plain AND query before it")
        mine = "".join(self.clauses)
        groups = []
        for group in condition.split("^NQ"):
            kept = "^".join(p for p in group.split("^") if p and not p.startswith("ORDERBY") and p != "EQ")
            groups.append(f"{mine}^{kept}" if kept else mine)
        return Query(("^NQ".join(groups),), self.orders)

    # -- ordering -----------------------------------------------------------------------------
    def order_by(self, name: str) -> Query:
        return Query(self.clauses, (*self.orders, f"ORDERBY{_check_field(name)}"), self._next_joiner)

    def order_by_desc(self, name: str) -> Query:
        return Query(self.clauses, (*self.orders, f"ORDERBYDESC{_check_field(name)}"), self._next_joiner)

    @property
    def ordered(self) -> bool:
        return bool(self.orders)

    def encode(self) -> str:
        parts = ["".join(self.clauses)] if self.clauses else []
        parts.extend(self.orders)
        return "^".join(parts)

    def __str__(self) -> str:
        return self.encode()
