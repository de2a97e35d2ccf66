"""A light PromQL check for the rules and the dashboard: no promtool in the test environment.

It does not evaluate anything. It tokenizes an expression, checks that brackets and quotes balance, that every
function is a PromQL function, and returns the metric names and grouping labels the expression uses, so the
tests can hold them against the metric catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset(
    {
        # aggregations
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        # functions the rules and the dashboard may use
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "histogram_quantile",
        "abs",
        "ceil",
        "floor",
        "round",
        "clamp",
        "clamp_min",
        "clamp_max",
        "vector",
        "scalar",
        "time",
        "absent",
        "absent_over_time",
        "changes",
        "resets",
        "label_replace",
        "label_join",
        "sort",
        "sort_desc",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "last_over_time",
        "timestamp",
        # Grafana template query function (variables only)
        "label_values",
    }
)
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                      "offset", "bool", "inf", "nan"})  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GRAFANA_VARS = re.compile(r"\$__\w+|\$\{?\w+\}?")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:.])\d+(?:\.\d+)?(?:e[+-]?\d+)?")


@dataclass
class Parsed:
    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    grouping_labels: set[str] = field(default_factory=set)
    matcher_labels: set[str] = field(default_factory=set)


class PromQLError(ValueError):
    pass


def _check_balanced(expr: str) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in ")]}":
            if not stack or stack.pop() != pairs[char]:
                raise PromQLError(f"unbalanced {char!r} in {expr!r}")
        elif char in "\"'":
            continue
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r} in {expr!r}")
    if _STRING.sub("", expr).count('"') or _STRING.sub("", expr).count("'"):
        raise PromQLError(f"unterminated string in {expr!r}")


def parse(expr: str) -> Parsed:
    """Check `expr` lightly and return what it refers to; raise PromQLError when it is malformed."""
    if not expr.strip():
        raise PromQLError("empty expression")
    _check_balanced(expr)
    result = Parsed()
    text = _GRAFANA_VARS.sub("1", expr)
    for matchers in _MATCHERS.findall(_STRING.sub('""', text)):
        for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
            result.matcher_labels.add(label)
    text = _MATCHERS.sub(" ", _STRING.sub('""', text))
    for group in _GROUPING.findall(text):
        result.grouping_labels.update(label.strip() for label in group.split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENT.finditer(text):
        name = match.group(0)
        following = text[match.end() :].lstrip()
        if name in KEYWORDS:
            continue
        if following.startswith("("):
            if name not in FUNCTIONS:
                raise PromQLError(f"unknown function {name!r} in {expr!r}")
            result.functions.add(name)
        else:
            result.metrics.add(name)
    return result
