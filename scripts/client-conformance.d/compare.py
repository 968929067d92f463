"""Comparing JSON values strictly, and checking the types held by a parsed generated model.

Strict means: JSON types count. Python says 80000 == 80000.0 and True == 1; a comparison that
relied on that would hide a service answering 80000.0 where the contract (section 3) says
80000, so an int and a float, or a bool and a number, are different here even when Python's
== says they are equal.

One normalisation, and only one: members the OpenAPI document declares `format: date-time`
are compared as instants. The generated models parse them into datetime and to_dict() writes
datetime.isoformat(), so the service's "2026-11-27T10:30:00.000Z" comes back as
"2026-11-27T10:30:00+00:00": a different spelling of the same instant, which says nothing
about the service. The service's own spelling is checked separately (customers.py).
"""

import datetime
import json
import re


def json_kind(value):
    """The JSON type of a decoded value (bool before int: bool is an int in Python)."""
    for kind, types in (
        ("null", type(None)),
        ("bool", bool),
        ("int", int),
        ("float", float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def show(value):
    """A value as JSON, with its JSON type when that is not plain from the text."""
    text = json.dumps(value)
    text = text if len(text) <= 200 else text[:200] + " ..."
    return f"{text} ({json_kind(value)})" if json_kind(value) in ("int", "float") else text


def json_differences(left, right, left_name, right_name, date_time_members=(), path="$"):
    """Where `left` and `right` differ, one line each; [] when they are the same JSON."""
    if isinstance(left, dict) and isinstance(right, dict):
        return _object_differences(left, right, left_name, right_name, date_time_members, path)
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return [f"{path}: {left_name} has {len(left)} items, {right_name} has {len(right)}"]
        differences = []
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            differences += json_differences(
                a, b, left_name, right_name, date_time_members, f"{path}[{index}]"
            )
        return differences
    member = path.rsplit(".", 1)[-1]
    if member in date_time_members and same_instant(left, right):
        return []
    if json_kind(left) != json_kind(right) or left != right:
        return [f"{path}: {left_name} has {show(left)}, {right_name} has {show(right)}"]
    return []


def _object_differences(left, right, left_name, right_name, date_time_members, path):
    differences = []
    for key in sorted(left.keys() | right.keys()):
        where = f"{path}.{key}"
        if key not in right:
            differences.append(
                f"{where}: {left_name} has {show(left[key])}, {right_name} has no such member"
            )
        elif key not in left:
            differences.append(
                f"{where}: {left_name} has no such member, {right_name} has {show(right[key])}"
            )
        else:
            differences += json_differences(
                left[key], right[key], left_name, right_name, date_time_members, where
            )
    return differences


def parse_instant(text):
    if not isinstance(text, str):
        return None
    try:
        instant = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def same_instant(a, b):
    first, second = parse_instant(a), parse_instant(b)
    return first is not None and second is not None and first == second


def date_time_members(spec):
    """Names of the members that an OpenAPI document declares `format: date-time`."""
    names = set()

    def walk(node):
        if isinstance(node, dict):
            for name, schema in (node.get("properties") or {}).items():
                if isinstance(schema, dict) and schema.get("format") == "date-time":
                    names.add(name)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    return frozenset(names)


# -- the types held by a parsed model ------------------------------------------------------------


def _alternatives(annotation):
    """'list[str] | None | Unset' -> ['list[str]', 'None', 'Unset'] (top-level | only)."""
    parts, depth, current = [], 0, ""
    for char in annotation:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _fits_one(value, alternative):
    if alternative == "Any":
        return True
    if alternative == "None":
        return value is None
    if alternative == "bool":
        return isinstance(value, bool)
    if alternative == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if alternative == "float":  # a float annotation accepts an int (PEP 484)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if alternative == "str":
        return isinstance(value, str)
    if alternative == "datetime.datetime":
        return isinstance(value, datetime.datetime)
    list_of = re.fullmatch(r"list\[(.*)\]", alternative)
    if list_of:
        return isinstance(value, list) and all(fits(item, list_of.group(1)) for item in value)
    if alternative.startswith("dict["):
        return isinstance(value, dict)
    # A generated model, enum or Unset: by class name.
    return type(value).__name__ == alternative


def fits(value, annotation):
    return any(_fits_one(value, alternative) for alternative in _alternatives(annotation))


def model_type_problems(value, path):
    """Attributes of a generated (attrs) model, at any depth, whose value is not of a type
    the model declares. The generated parsers of unions fall back to the raw JSON value when
    no member parses (`return cast(..., data)`), so a parse failure can hide as a dict where
    a model was expected."""
    fields = getattr(type(value), "__attrs_attrs__", None)
    if fields is not None:
        problems = []
        for field in fields:
            if field.name == "additional_properties":
                continue
            member = getattr(value, field.name)
            annotation = field.type if isinstance(field.type, str) else repr(field.type)
            where = f"{path}.{field.name}"
            if not fits(member, annotation):
                problems.append(
                    f"{where}: holds {type(member).__name__} {member!r:.200}, declared {annotation}"
                )
            problems += model_type_problems(member, where)
        return problems
    if isinstance(value, list):
        problems = []
        for index, item in enumerate(value):
            problems += model_type_problems(item, f"{path}[{index}]")
        return problems
    return []
