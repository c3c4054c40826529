"""The text of the generated files: ``#`` comments, and hand-written YAML and TOML
writers (no dependency, output every reader agrees on)."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from .stamp import stamped

__all__ = ["comment", "to_toml", "to_yaml", "yaml_file"]


def comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def yaml_file(documents: Any, header: str) -> str:
    docs = documents if isinstance(documents, list) else [documents]
    return stamped(comment(header) + "---\n".join(to_yaml(doc) for doc in docs))


# YAML: plain scalars only where every YAML 1.1 and 1.2 reader (PyYAML, Go's, Compose's)
# reads a string; everything else is a JSON string, which is valid YAML.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_UNSAFE_IN_QUOTES = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_UNSAFE_IN_BLOCK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def to_yaml(value: Any) -> str:
    """A YAML document for dicts, lists, strings, numbers, booleans and None."""
    return "\n".join(_yaml_lines(value, 0)) + "\n"


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        special = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}
        if text in special:
            return special[text]
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 floats have a '.' in the mantissa: 1e+16 would read as a string
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in _WORDS
        return value if plain else _yaml_string(value)
    if value == {} or value == []:
        return json.dumps(value)
    raise TypeError(f"no YAML for {type(value).__name__}")


def _yaml_string(text: str) -> str:
    """A double-quoted scalar: a JSON string, with what YAML counts as line breaks or
    non-printable escaped too."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNSAFE_IN_QUOTES.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _is_block(value: Any) -> bool:
    """A multi-line string written as a literal block (``|``), which keeps one final newline."""
    return (
        isinstance(value, str)
        and value.endswith("\n")
        and not value.endswith("\n\n")
        and not value[:1].isspace()
        and not _UNSAFE_IN_BLOCK.search(value)
    )


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            lines.extend(_yaml_entry(f"{pad}{_yaml_scalar(str(key))}:", item, indent))
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            lines.extend(_yaml_entry(f"{pad}-", item, indent, item=True))
        return lines
    return [pad + _yaml_scalar(value)]


def _yaml_entry(lead: str, value: Any, indent: int, *, item: bool = False) -> list[str]:
    if _is_block(value):
        inner = " " * (indent + 2)
        return [f"{lead} |", *(inner + line if line else "" for line in value[:-1].split("\n"))]
    if isinstance(value, dict | list) and value:
        nested = _yaml_lines(value, indent + 2)
        if item:  # "- key: value" on the dash's line
            return [f"{lead} {nested[0].lstrip()}", *nested[1:]]
        return [lead, *nested]
    return [f"{lead} {_yaml_scalar(value)}"]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(data: dict[str, Any]) -> str:
    """TOML for a parsed ``loom.toml``: tables as sections, arrays and inline tables inline."""
    return "\n".join(_toml_table(data, ())).lstrip("\n") + "\n"


def _toml_table(data: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = []
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(map(_toml_key, path))}]"]
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in scalars.items()]
    for key, table in tables.items():
        lines += _toml_table(table, (*path, key))
    return lines


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")
