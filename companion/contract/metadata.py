"""JSON Schemas of the project's JSON files and a small validator for them.

The schemas (draft 2020-12) live in ``companion/contract/jsonschema/`` and are the
single source for the JSON documents of the format:

- ``session_metadata``: a session folder's ``metadata.json`` (seed 001 fields, ``env``,
  ``alignment`` written by nm-align, ``source_export`` for zip imports);
- ``chunk_metadata``: a dataset chunk's ``metadata.json`` (every seed 000 field);
- ``dataset``: ``dataset.json`` at a dataset root.

The validator implements exactly the subset of JSON Schema these files use (listed in
``SUPPORTED_KEYWORDS``); :func:`load_schema` refuses a schema with any other keyword,
so a schema can never silently carry a constraint that is not checked. Pure logic
apart from reading the packaged schema files.
"""
from __future__ import annotations

import decimal
import json
import math
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from ..util.errors import BadInput
from .version import FORMAT_VERSION

SCHEMA_NAMES = ("session_metadata", "chunk_metadata", "dataset")

# Keywords the validator understands; annotations are accepted and ignored.
SUPPORTED_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "pattern", "minLength", "maxLength", "anyOf", "$ref", "$defs",
})
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "examples", "default",
                         "$comment", "format"})

_SEMVER_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
                        r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_MAX_DEPTH = 64  # documents nested deeper than this are refused, not recursed into


def parse_semver(text: Any) -> tuple[int, int, int] | None:
    """``"1.2.3"`` (optionally with ``-pre``/``+build``) -> ``(1, 2, 3)``; None if not semver."""
    if not isinstance(text, str):
        return None
    m = _SEMVER_RE.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def check_format_version(version: Any, supported: str = FORMAT_VERSION) -> str | None:
    """Reader compatibility rule (docs/contracts/versioning.md): a reader of ``supported``
    reads any version with the same major. Returns None if readable, else why not."""
    theirs = parse_semver(version)
    if theirs is None:
        return f"format_version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)"
    ours = parse_semver(supported)
    assert ours is not None
    if theirs[0] != ours[0]:
        return (f"format_version {version} has major version {theirs[0]}; this reader "
                f"supports major {ours[0]} ({supported})")
    return None


def _check_keywords(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in SUPPORTED_KEYWORDS and k not in ANNOTATIONS:
                raise ValueError(f"schema keyword {k!r} at {where} is not supported by "
                                 f"companion.contract.metadata")
            if k in ("properties", "$defs"):
                for name, sub in v.items():
                    _check_keywords(sub, f"{where}/{k}/{name}")
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                _check_keywords(v, f"{where}/{k}")
            elif k in ("prefixItems", "anyOf"):
                for i, sub in enumerate(v):
                    _check_keywords(sub, f"{where}/{k}/{i}")


@lru_cache(maxsize=None)
def _load_schema_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise BadInput(f"unknown schema {name!r} (known: {', '.join(SCHEMA_NAMES)})")
    ref = resources.files("companion.contract").joinpath("jsonschema", f"{name}.schema.json")
    return ref.read_text(encoding="utf-8")


def load_schema(name: str) -> dict:
    """The parsed JSON Schema ``name`` (one of ``SCHEMA_NAMES``); a fresh copy each call.

    Raises ValueError if the schema uses a keyword this module does not implement.
    """
    schema = json.loads(_load_schema_text(name))
    _check_keywords(schema, "#")
    return schema


def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if t == "integer":
        # JSON Schema: a number with a zero fractional part is an integer.
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)
                                          and value.is_integer())
    if t == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return False


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _path(parts: tuple) -> str:
    if not parts:
        return "(root)"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


class _Validator:
    def __init__(self, root: dict):
        self.root = root

    def resolve(self, ref: str) -> dict:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def run(self, value: Any, schema: dict, at: tuple, out: list[str], depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            out.append(f"{_path(at)}: nested too deeply")
            return
        if "$ref" in schema:
            self.run(value, self.resolve(schema["$ref"]), at, out, depth + 1)
        if "anyOf" in schema:
            trials: list[list[str]] = []
            for sub in schema["anyOf"]:
                trial: list[str] = []
                self.run(value, sub, at, trial, depth + 1)
                if not trial:
                    break
                trials.append(trial)
            else:
                # report the branch that came closest (fewest violations)
                out.extend(min(trials, key=len) if trials else
                           [f"{_path(at)}: matches none of the allowed forms"])
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_type_ok(value, t) for t in types):
                out.append(f"{_path(at)}: expected {' or '.join(types)}, got {_describe(value)}")
                return
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            out.append(f"{_path(at)}: {_short(value)} is not one of {schema['enum']}")
        if "const" in schema and not _same(value, schema["const"]):
            out.append(f"{_path(at)}: must be {schema['const']!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{_path(at)}: {value} is below the minimum {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                out.append(f"{_path(at)}: {value} is above the maximum {schema['maximum']}")
            if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
                out.append(f"{_path(at)}: {value} must be greater than {schema['exclusiveMinimum']}")
            if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
                out.append(f"{_path(at)}: {value} must be less than {schema['exclusiveMaximum']}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(f"{_path(at)}: shorter than {schema['minLength']} characters")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(f"{_path(at)}: longer than {schema['maxLength']} characters")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{_path(at)}: {_short(value)} does not match {schema['pattern']}")
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                out.append(f"{_path(at)}: needs at least {schema['minItems']} items, has {len(value)}")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                out.append(f"{_path(at)}: allows at most {schema['maxItems']} items, has {len(value)}")
            prefix = schema.get("prefixItems", [])
            for i, (item, sub) in enumerate(zip(value, prefix)):
                self.run(item, sub, at + (i,), out, depth + 1)
            if isinstance(schema.get("items"), dict):
                for i in range(len(prefix), len(value)):
                    self.run(value[i], schema["items"], at + (i,), out, depth + 1)
        if isinstance(value, dict):
            for key in schema.get("required", []):
                if key not in value:
                    out.append(f"{_path(at + (key,))}: required field is missing")
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            for key, item in value.items():
                if key in props:
                    self.run(item, props[key], at + (key,), out, depth + 1)
                elif extra is False:
                    out.append(f"{_path(at + (key,))}: unknown field")
                elif isinstance(extra, dict):
                    self.run(item, extra, at + (key,), out, depth + 1)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_json(obj: Any, schema_name: str) -> list[str]:
    """Check a parsed JSON document against schema ``schema_name``.

    Returns one human-readable message per violation (``"<json path>: <what is wrong>"``),
    an empty list when the document is valid. Never raises for any ``obj``.
    """
    schema = load_schema(schema_name)
    out: list[str] = []
    _Validator(schema).run(obj, schema, (), out)
    return out


def json_depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` and ``{}`` are 1),
    computed without recursion."""
    depth, stack = 0, [(obj, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (list, dict)):
            d += 1
            depth = max(depth, d)
            stack.extend((v, d) for v in (node.values() if isinstance(node, dict) else node))
    return depth


def loads_json_strict(data: bytes | str, source: str, exact_decimals: bool = False,
                      max_depth: int | None = None) -> Any:
    """Parse JSON bytes/text the way every reader of the format does.

    UTF-8 (a BOM is tolerated); NaN/Infinity and documents nested deeper than the
    interpreter can parse are refused. Raises :class:`BadInput` with a one-line message
    naming ``source`` and, for syntax errors, the line and column. With
    ``exact_decimals`` numbers with a fraction or exponent parse as ``decimal.Decimal``
    (exact: a fractional epoch-ms timestamp keeps its ns). ``max_depth``: also refuse
    documents nested deeper than this (a reader that writes the document back, or
    walks it recursively, needs headroom the parser's own limit does not leave).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise BadInput(f"{source}: not UTF-8 text (byte {e.start})") from None

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not allowed in JSON")

    try:
        doc = json.loads(data, parse_constant=_no_constants,
                         parse_float=decimal.Decimal if exact_decimals else None)
    except json.JSONDecodeError as e:
        raise BadInput(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise BadInput(f"{source}: JSON nested too deeply") from None
    except ValueError as e:
        raise BadInput(f"{source}: invalid JSON: {' '.join(str(e).split())[:200]}") from None
    if max_depth is not None and json_depth(doc) > max_depth:
        raise BadInput(f"{source}: JSON nested deeper than {max_depth} levels")
    return doc
