"""SCIM filters (RFC 7644 §3.4.2.2) as Django queries, for the attributes Okta and Entra ID filter on.

scim2-filter-parser parses the grammar; the translation to `Q` is ours because its own Django transpiler
silently drops attributes it does not know (a filter on a typo would list everyone). Here an unknown
attribute, an operator the attribute does not support or a malformed value is a 400 invalidFilter.

Supported: userName, externalId, id, active, displayName (groups), emails.value and
`emails[type eq "work"].value` (our one address is the primary work one), name.givenName/familyName,
`members[value eq "..."]` / members.value (groups); eq, ne, co, sw, ew, pr; and, or, not, parentheses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from scim2_filter_parser import ast as scim_ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser

from apps.accounts.scim.errors import ScimError, invalid_filter

MAX_FILTER_LENGTH = 2000
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
_STRING_OPS = {"eq": "iexact", "co": "icontains", "sw": "istartswith", "ew": "iendswith"}
_NOTHING = Q(pk__in=[])


@dataclass(frozen=True)
class Attr:
    field: str
    kind: str = "str"  # str (case-insensitive), exact (case-exact string), uuid, bool


USER_ATTRS: dict[tuple[str, str | None], Attr] = {
    ("username", None): Attr("user_name"),
    ("externalid", None): Attr("external_id", "exact"),
    ("id", None): Attr("scim_id", "uuid"),
    ("active", None): Attr("active", "bool"),
    ("emails", None): Attr("user__email"),
    ("emails", "value"): Attr("user__email"),
    ("name", "givenname"): Attr("user__first_name"),
    ("name", "familyname"): Attr("user__last_name"),
}
GROUP_ATTRS: dict[tuple[str, str | None], Attr] = {
    ("displayname", None): Attr("display_name"),
    ("externalid", None): Attr("external_id", "exact"),
    ("id", None): Attr("scim_id", "uuid"),
    ("members", None): Attr("members__scim_id", "uuid"),
    ("members", "value"): Attr("members__scim_id", "uuid"),
}
# What a sub-filter inside emails[...] may test, against the one address we keep (primary, type work).
_EMAIL_FACTS: dict[str, Any] = {"type": "work", "primary": True}


class _Translator:
    def __init__(self, attrs: dict[tuple[str, str | None], Attr], schema: str) -> None:
        self.attrs = attrs
        self.schema = schema.lower()

    def visit(self, node: Any) -> Q:
        if isinstance(node, scim_ast.Filter):
            if node.namespace is not None:  # members[value eq "x"] (Entra): the namespace's attribute
                query = self.complex(node.namespace, node.expr)
            else:
                query = self.visit(node.expr)
            return ~query if node.negated else query
        if isinstance(node, scim_ast.LogExpr):
            left, right = self.visit(node.expr1), self.visit(node.expr2)
            return left & right if node.op.lower() == "and" else left | right
        if isinstance(node, scim_ast.AttrExpr):
            if isinstance(node.attr_path.attr_name, scim_ast.Filter):  # emails[type eq "work"].value eq "x"
                inner = node.attr_path.attr_name
                namespace = inner.namespace
                if not self.sub_filter_holds(namespace, inner.expr):
                    return _NOTHING
                return self.compare(namespace, node.value, node.comp_value)
            return self.compare(node.attr_path, node.value, node.comp_value)
        raise invalid_filter("Unsupported filter expression.")

    def attr(self, path: Any) -> Attr:
        if path.uri and path.uri.lower() != self.schema:
            raise invalid_filter("Unsupported schema in filter.")
        name = str(path.attr_name).lower()
        sub = path.sub_attr.value.lower() if path.sub_attr is not None else None
        found = self.attrs.get((name, sub))
        if found is None:
            raise invalid_filter("Unsupported filter attribute.")
        return found

    def compare(self, path: Any, op: str, comp: Any) -> Q:
        attr = self.attr(path)
        op = op.lower()
        value = _value(comp)
        if op == "pr":
            if attr.kind in ("bool", "uuid"):
                return Q(**{f"{attr.field}__isnull": False})
            return Q(**{f"{attr.field}__isnull": False}) & ~Q(**{attr.field: ""})
        if op not in ("eq", "ne", "co", "sw", "ew"):
            raise invalid_filter("Unsupported filter operator.")
        if attr.kind == "bool":
            if op not in ("eq", "ne") or not isinstance(value, bool):
                raise invalid_filter("Compare a boolean attribute with eq or ne and true or false.")
            query = Q(**{attr.field: value})
        elif not isinstance(value, str):
            raise invalid_filter("Compare this attribute with a string.")
        elif attr.kind == "uuid":
            if op not in ("eq", "ne"):
                raise invalid_filter("Compare an id with eq or ne.")
            try:
                query = Q(**{attr.field: uuid.UUID(value)})
            except ValueError:
                query = _NOTHING  # not one of our ids: matches nothing (not an error: Entra probes)
        elif attr.kind == "exact" and op in ("eq", "ne"):
            query = Q(**{attr.field: value})
        else:
            query = Q(**{f"{attr.field}__{_STRING_OPS.get(op, 'iexact')}": value})
        return ~query if op == "ne" else query

    def complex(self, namespace: Any, expr: Any) -> Q:
        """`members[value eq "x"]`: the sub-filter's attribute is a sub-attribute of the namespace."""
        if isinstance(expr, scim_ast.Filter):
            query = self.complex(namespace, expr.expr)
            return ~query if expr.negated else query
        if isinstance(expr, scim_ast.LogExpr):
            left, right = self.complex(namespace, expr.expr1), self.complex(namespace, expr.expr2)
            return left & right if expr.op.lower() == "and" else left | right
        if isinstance(expr, scim_ast.AttrExpr) and isinstance(expr.attr_path.attr_name, str):
            path = scim_ast.AttrPath(namespace.attr_name, scim_ast.SubAttr(expr.attr_path.attr_name), None)
            if (
                str(namespace.attr_name).lower() == "emails"
                and expr.attr_path.attr_name.lower() in _EMAIL_FACTS
            ):
                return Q() if self.sub_filter_holds(namespace, expr) else _NOTHING
            return self.compare(path, expr.value, expr.comp_value)
        raise invalid_filter("Unsupported filter expression.")

    def sub_filter_holds(self, namespace: Any, expr: Any) -> bool:
        """Evaluate `type eq "work"` / `primary eq true` inside emails[...] against our one address."""
        if str(namespace.attr_name).lower() != "emails" or ("emails", "value") not in self.attrs:
            raise invalid_filter("Unsupported filter attribute.")
        if isinstance(expr, scim_ast.Filter):
            holds = self.sub_filter_holds(namespace, expr.expr)
            return not holds if expr.negated else holds
        if isinstance(expr, scim_ast.LogExpr):
            left = self.sub_filter_holds(namespace, expr.expr1)
            right = self.sub_filter_holds(namespace, expr.expr2)
            return (left and right) if expr.op.lower() == "and" else (left or right)
        if isinstance(expr, scim_ast.AttrExpr) and isinstance(expr.attr_path.attr_name, str):
            name = expr.attr_path.attr_name.lower()
            if name not in _EMAIL_FACTS or expr.value.lower() not in ("eq", "ne"):
                raise invalid_filter("Unsupported filter on emails.")
            fact, value = _EMAIL_FACTS[name], _value(expr.comp_value)
            same = (
                fact.lower() == value.lower()
                if isinstance(fact, str) and isinstance(value, str)
                else fact == value
            )
            return same if expr.value.lower() == "eq" else not same
        raise invalid_filter("Unsupported filter expression.")


def _value(comp: Any) -> Any:
    if comp is None:
        return None
    value = comp.value
    if value == "true":
        return True
    if value == "false":
        return False
    if value == "null":
        return None
    return value


def _parse(text: str) -> Any:
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid_filter("The filter is too long.")
    if "\x00" in text:
        raise invalid_filter("The filter must not contain NUL characters.")
    try:
        return SCIMParser().parse(SCIMLexer().tokenize(text))
    except RecursionError:
        raise invalid_filter("The filter is nested too deeply.") from None
    except Exception:  # the parser raises its own error, ValueError, or sly's
        raise invalid_filter("The filter is not valid SCIM filter syntax.") from None


def filter_query(text: str, *, resource: str) -> Q:
    """A `Q` over ScimUser ("User") or ScimGroup ("Group") rows for the filter; ScimError 400 if not valid."""
    tree = _parse(text)
    if tree is None:
        raise invalid_filter("The filter is empty.")
    translator = (
        _Translator(USER_ATTRS, USER_SCHEMA) if resource == "User" else _Translator(GROUP_ATTRS, GROUP_SCHEMA)
    )
    try:
        return translator.visit(tree)
    except ScimError:
        raise
    except RecursionError:
        raise invalid_filter("The filter is nested too deeply.") from None
    except (AttributeError, TypeError, ValueError):
        raise invalid_filter("The filter is not valid SCIM filter syntax.") from None
