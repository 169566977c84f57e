"""Encoded queries (`sysparm_query`): parse into conditions, evaluate over records in Python.

Grammar as the instance reads it: `^NQ` separates whole queries that are OR-ed; inside one, `^` separates terms
that are AND-ed; a term continued with `^OR` is an OR of conditions (so `a^b^ORc` is a AND (b OR c)).
`ORDERBY<field>` / `ORDERBYDESC<field>` may appear anywhere. A clause the instance cannot understand (unknown
field, unknown operator) is silently dropped — that is the real instance's default and exactly the trap
DESIGN.md §5 warns about, so the emulator must reproduce it rather than answer 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from sandbox.tables import Table, get_table, is_known_field

Record = dict[str, str]
# (reference table, sys_id) -> the referenced record, used for dot-walking one level.
Lookup = Callable[[str, str], Record | None]

_OPERATORS = (
    "NOT IN",
    "NOTLIKE",
    "ISNOTEMPTY",
    "ISEMPTY",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "IN",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
)
# Field names are lower case on an instance, so an upper-case operator can't be mistaken for part of one.
_CLAUSE = re.compile(
    r"^(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)(?P<op>"
    + "|".join(map(re.escape, _OPERATORS))
    + r")(?P<value>.*)$",
    re.DOTALL,
)


@dataclass(frozen=True)
class FieldRef:
    """A field of the queried table, or one level through a reference (`cmdb_ci.name`)."""

    name: str
    via: str | None = None
    via_table: str | None = None
    numeric: bool = False

    def value(self, record: Record, lookup: Lookup) -> str:
        if self.via is None:
            return record.get(self.name, "")
        target_id = record.get(self.via, "")
        if not target_id or self.via_table is None:
            return ""
        target = lookup(self.via_table, target_id)
        return target.get(self.name, "") if target else ""


def resolve_field(table: Table, path: str) -> FieldRef | None:
    """None when the instance would not know the field (the clause is then ignored)."""
    if "." not in path:
        if not is_known_field(table, path):
            return None
        return FieldRef(path, numeric=path in table.numeric or path == "sys_mod_count")
    via, name = path.split(".", 1)
    ref_table_name = table.references.get(via)
    ref_table = get_table(ref_table_name) if ref_table_name else None
    if ref_table is None or not is_known_field(ref_table, name):
        return None
    return FieldRef(name, via=via, via_table=ref_table.name, numeric=name in ref_table.numeric)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(op: str, left: str, right: str, numeric: bool) -> bool:
    if left == "":
        return False  # an empty value is neither less nor greater than anything
    a: float | str = left
    b: float | str = right
    if numeric:
        na, nb = _as_number(left), _as_number(right)
        if na is not None and nb is not None:
            a, b = na, nb
    # When one side is a number and the other not, fall back to comparing text.
    if type(a) is not type(b):
        a, b = left, right
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def _predicate(op: str, value: str, numeric: bool) -> Callable[[str], bool] | None:
    """How one operator tests one field value. String matching is case-insensitive like the instance's DB."""
    low = value.lower()
    items = {v.strip() for v in value.split(",")}
    tests: dict[str, Callable[[str], bool]] = {
        "=": lambda v: v == value,
        "!=": lambda v: v != value,
        "IN": lambda v: v in items,
        "NOT IN": lambda v: v not in items,
        "LIKE": lambda v: low in v.lower(),
        "NOTLIKE": lambda v: low not in v.lower(),
        "STARTSWITH": lambda v: v.lower().startswith(low),
        "ENDSWITH": lambda v: v.lower().endswith(low),
        "ISEMPTY": lambda v: v == "",
        "ISNOTEMPTY": lambda v: v != "",
    }
    if op in tests:
        return tests[op]
    if op in ("<", "<=", ">", ">="):
        return lambda v: _compare(op, v, value, numeric)
    return None


@dataclass(frozen=True)
class Condition:
    field: FieldRef
    test: Callable[[str], bool]
    text: str

    def matches(self, record: Record, lookup: Lookup) -> bool:
        return self.test(self.field.value(record, lookup))


def parse_condition(table: Table, clause: str) -> Condition | None:
    match = _CLAUSE.match(clause)
    if match is None:
        return None
    field_ref = resolve_field(table, match["field"])
    if field_ref is None:
        return None
    test = _predicate(match["op"], match["value"], field_ref.numeric)
    return Condition(field_ref, test, clause) if test else None


@dataclass
class Query:
    """OR of groups (^NQ); each group an AND of terms; each term an OR of conditions."""

    groups: list[list[list[Condition]]] = field(default_factory=list)
    order: list[tuple[FieldRef, bool]] = field(default_factory=list)

    def matches(self, record: Record, lookup: Lookup) -> bool:
        if not self.groups:
            return True
        return any(all(any(c.matches(record, lookup) for c in term) for term in group) for group in self.groups)

    def apply(self, rows: Iterable[Record], lookup: Lookup) -> list[Record]:
        selected = [r for r in rows if self.matches(r, lookup)] if self.groups else list(rows)
        # Python's sort is stable: sorting by the last key first gives a multi-key sort whose ties keep
        # insertion order — records created in the same second stay in creation order.
        for field_ref, descending in reversed(self.order):
            selected.sort(key=partial(_sort_key, field_ref, lookup=lookup), reverse=descending)
        return selected


def _sort_key(field_ref: FieldRef, record: Record, *, lookup: Lookup) -> tuple[int, float, str]:
    value = field_ref.value(record, lookup)
    if value == "":
        return (0, -math.inf, "")  # empty values sort first, like NULLs on the instance
    number = _as_number(value) if field_ref.numeric else None
    return (1, number if number is not None else 0.0, value if number is None else "")


def parse(table: Table, encoded: str) -> Query:
    query = Query()
    for segment in encoded.split("^NQ"):
        group: list[list[Condition]] = []
        current: list[Condition] | None = None
        had_conditions = False
        for part in segment.split("^"):
            if not part or part == "EQ":
                continue
            if part.startswith("ORDERBY"):
                descending = part.startswith("ORDERBYDESC")
                ref = resolve_field(table, part[len("ORDERBYDESC") if descending else len("ORDERBY") :])
                if ref is not None:
                    query.order.append((ref, descending))
                continue
            had_conditions = True
            is_or = part.startswith("OR")
            condition = parse_condition(table, part[2:] if is_or else part)
            if condition is None:
                if not is_or:
                    current = None  # the dropped clause's ^OR siblings start a term of their own
                continue
            if is_or and current is not None:
                current.append(condition)
            else:
                current = [condition]
                group.append(current)
        if group or had_conditions:
            # A group whose every clause was dropped is empty and so selects every row, as the instance does.
            query.groups.append(group)
    return query
