"""The encoded-query builder: every operator encodes as the instance expects, and nothing can inject structure."""

from __future__ import annotations

import pytest

from servicenow.query import Query, QueryValueError


@pytest.mark.parametrize(
    ("build", "encoded"),
    [
        (lambda q: q.eq("state", "-2"), "state=-2"),
        (lambda q: q.ne("state", "3"), "state!=3"),
        (lambda q: q.gt("impact", 1), "impact>1"),
        (lambda q: q.ge("impact", 1), "impact>=1"),
        (lambda q: q.lt("urgency", 3), "urgency<3"),
        (lambda q: q.le("urgency", 3), "urgency<=3"),
        (lambda q: q.like("short_description", "disk full"), "short_descriptionLIKEdisk full"),
        (lambda q: q.not_like("short_description", "test"), "short_descriptionNOTLIKEtest"),
        (lambda q: q.startswith("name", "web-"), "nameSTARTSWITHweb-"),
        (lambda q: q.endswith("fqdn", ".example.com"), "fqdnENDSWITH.example.com"),
        (lambda q: q.in_("state", ["-2", "-1"]), "stateIN-2,-1"),
        (lambda q: q.not_in("install_status", [7, 100]), "install_statusNOT IN7,100"),
        (lambda q: q.isempty("close_code"), "close_codeISEMPTY"),
        (lambda q: q.isnotempty("cmdb_ci"), "cmdb_ciISNOTEMPTY"),
        (lambda q: q.eq("cmdb_ci.name", "web-01"), "cmdb_ci.name=web-01"),
        (lambda q: q.order_by("number"), "ORDERBYnumber"),
        (lambda q: q.order_by_desc("sys_created_on"), "ORDERBYDESCsys_created_on"),
    ],
)
def test_each_operator_encodes_as_servicenow_expects(build, encoded):
    assert build(Query()).encode() == encoded


def test_conditions_are_anded_with_caret_and_orders_come_last():
    query = Query().order_by("number").eq("state", "-2").eq("approval", "approved")
    assert query.encode() == "state=-2^approval=approved^ORDERBYnumber"
    assert str(query) == query.encode()


def test_or_joins_the_next_condition_with_caret_or():
    assert Query().eq("a", "1").or_().eq("b", "2").eq("c", "3").encode() == "a=1^ORb=2^c=3"


def test_new_query_starts_an_alternative_group_with_caret_nq():
    query = Query().eq("a", "1").eq("b", "2").new_query().eq("c", "3").order_by_desc("number")
    assert query.encode() == "a=1^b=2^NQc=3^ORDERBYDESCnumber"


def test_or_and_new_query_need_a_condition_before_them():
    with pytest.raises(QueryValueError):
        Query().or_()
    with pytest.raises(QueryValueError):
        Query().new_query()


def test_queries_are_immutable_so_a_shared_base_is_never_changed():
    base = Query().eq("active", "true")
    narrowed = base.eq("state", "1").order_by("number")
    assert base.encode() == "active=true"
    assert not base.ordered
    assert narrowed.ordered
    assert narrowed.encode() == "active=true^state=1^ORDERBYnumber"


def test_an_empty_query_encodes_to_nothing():
    assert Query().encode() == ""


@pytest.mark.parametrize("bad", ["a^b", "x^ORstate=1", "line\nbreak", "carriage\rreturn", "^NQactive=true"])
@pytest.mark.parametrize("method", ["eq", "ne", "like", "startswith", "endswith", "gt", "lt"])
def test_values_that_would_change_the_query_are_refused_naming_the_field(method, bad):
    with pytest.raises(QueryValueError, match="short_description"):
        getattr(Query(), method)("short_description", bad)


@pytest.mark.parametrize("method", ["in_", "not_in"])
def test_in_values_with_a_comma_or_caret_are_refused_naming_the_field(method):
    with pytest.raises(QueryValueError, match=r"'name'.*','"):
        getattr(Query(), method)("name", ["web-01", "web-02,web-03"])
    with pytest.raises(QueryValueError, match=r"'name'.*'\^'"):
        getattr(Query(), method)("name", ["web-01^ORactive=false"])


def test_in_needs_at_least_one_value():
    with pytest.raises(QueryValueError, match="state"):
        Query().in_("state", [])
    with pytest.raises(QueryValueError, match="state"):
        Query().not_in("state", [])


@pytest.mark.parametrize(
    "field",
    ["", "1state", "state=1", "state^ORactive", "a.b.c", "cmdb ci", "name\n", "sys-id", ".name", "name."],
)
def test_bad_field_names_are_refused(field):
    with pytest.raises(QueryValueError, match="invalid field name"):
        Query().eq(field, "x")
    with pytest.raises(QueryValueError, match="invalid field name"):
        Query().order_by(field)
    with pytest.raises(QueryValueError, match="invalid field name"):
        Query().isempty(field)


def test_query_value_error_is_a_value_error_so_callers_can_catch_either():
    assert issubclass(QueryValueError, ValueError)


def test_where_accepts_the_comparison_operators():
    assert Query().where("priority", "<=", 2).encode() == "priority<=2"


@pytest.mark.parametrize("op", ["=1^ORactive=", "\n", "IN", "ISEMPTY", "javascript:"])
def test_where_refuses_an_unknown_operator_naming_the_field(op):
    with pytest.raises(QueryValueError, match=r"unknown operator.*'state'"):
        Query().where("state", op, "true")
