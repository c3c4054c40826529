"""Tool signatures: JSON schemas from type hints, and argument checking.

An agent's ``@tool`` method is described by its signature: each parameter becomes a
property of the tool's input schema (pydantic builds it from the type hints, defaults
and ``Annotated[..., Field(description=...)]``), the return annotation its output schema.
The same model validates the arguments of every call, so a wrong argument comes back
as a :class:`~loom_kernel.errors.ToolError` naming the field.

>>> class Prices(Agent):                                   # doctest: +SKIP
...     @tool()
...     async def latest(self, symbol: str, limit: int = 10) -> list[float]:
...         '''The last prices of a symbol.'''
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from ..errors import ToolError

__all__ = ["ToolInfo", "ToolSignature", "check_arguments"]


@dataclass(frozen=True)
class ToolInfo:
    """One callable tool, as ``rt.tools()`` and ``loom tools`` list it.

    Attributes:
        name: what to pass to ``ctx.tool(name, ...)``.
        description: what it does (the method's docstring, or the MCP server's text).
        input_schema: JSON schema of the arguments object.
        output_schema: JSON schema of the result, when known.
        provider: ``agent:<agent id>``, ``mcp:<server name>`` or ``wasi:<module path>``.
        kind: ``"agent"``, ``"mcp"`` or ``"wasi"`` (a sandboxed ``[tools.<name>]``).
        process: the bus client id of the process serving it (agent tools), else None.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    provider: str = ""
    kind: str = "agent"
    process: str | None = None
    aliases: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The tool as ``loom.tools.query`` lists it (docs/PROTOCOL.md section 6)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "provider": self.provider,
            "kind": self.kind,
            "process": self.process,
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolInfo:
        """A tool from a ``loom.tools.query`` answer (defaults for missing keys)."""
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            input_schema=dict(data.get("input_schema") or {"type": "object"}),
            output_schema=data.get("output_schema"),
            provider=str(data.get("provider") or ""),
            kind=str(data.get("kind") or "agent"),
            process=data.get("process"),
            aliases=tuple(data.get("aliases") or ()),
        )


class ToolSignature:
    """The arguments model of one tool method, built once when its agent starts."""

    def __init__(self, name: str, method: Callable[..., Awaitable[Any]]):
        self.name = name
        self.method = method
        signature = inspect.signature(method)
        try:
            hints = get_type_hints(method, include_extras=True)
        except Exception:  # unresolvable forward references: fall back to no types
            hints = {}
        fields: dict[str, Any] = {}
        self._var_keyword = False
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                self._var_keyword = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
                raise TypeError(
                    f"@tool {name!r}: parameter {param.name!r} must be passable by name "
                    "(tools are called with a JSON object of named arguments)"
                )
            annotation = hints.get(param.name, Any)
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
        extra = "allow" if self._var_keyword else "forbid"
        self.model: type[BaseModel] = create_model(
            f"{name.replace('.', '_').replace('-', '_')}_arguments",
            __config__=ConfigDict(extra=extra, arbitrary_types_allowed=True),
            **fields,
        )
        self._returns = hints.get("return", inspect.Signature.empty)

    def input_schema(self) -> dict[str, Any]:
        try:
            schema = self.model.model_json_schema()
        except Exception:  # a type pydantic cannot describe still validates
            schema = {"type": "object"}
        schema.pop("title", None)
        return schema

    def output_schema(self) -> dict[str, Any] | None:
        if self._returns in (inspect.Signature.empty, None, type(None)):
            return None
        try:
            return TypeAdapter(self._returns).json_schema()
        except Exception:
            return None

    def info(self, description: str, provider: str, process: str | None) -> ToolInfo:
        return ToolInfo(
            name=self.name,
            description=description,
            input_schema=self.input_schema(),
            output_schema=self.output_schema(),
            provider=provider,
            kind="agent",
            process=process,
        )

    def bind(self, args: Any) -> dict[str, Any]:
        """Validate a call's arguments; returns the keyword arguments for the method.

        Raises:
            ToolError: not an object, a missing or unknown argument, or a wrong type;
                the message names the field and what was expected.
        """
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ToolError(
                f"tool {self.name!r}: arguments must be an object of named values, "
                f"got {type(args).__name__}"
            )
        try:
            validated = self.model.model_validate(args)
        except ValidationError as exc:
            raise ToolError(
                f"tool {self.name!r}: {_describe(exc, list(self.model.model_fields))}"
            ) from None
        values = {name: getattr(validated, name) for name in type(validated).model_fields}
        values.update(validated.model_extra or {})
        return values


def _describe(exc: ValidationError, accepted: list[str]) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"argument {where!r} is missing")
        elif error["type"] == "extra_forbidden":
            problems.append(
                f"unknown argument {where!r} (it takes: {', '.join(accepted) or 'none'})"
            )
        else:
            problems.append(f"argument {where!r}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


async def load_validator() -> None:
    """Import the JSON-schema validator off the event loop (the first import takes ~1 s,
    which :func:`check_arguments` would otherwise spend on the loop of every agent)."""
    if "jsonschema" not in sys.modules:
        await asyncio.to_thread(importlib.import_module, "jsonschema")


def check_arguments(info: ToolInfo, args: dict[str, Any]) -> None:
    """Check arguments against a tool's JSON schema before sending them anywhere.

    Raises:
        ToolError: naming each missing, unknown or mistyped argument.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        validator = Draft202012Validator(info.input_schema)
        errors = sorted(validator.iter_errors(args), key=lambda error: list(error.path))
    except SchemaError:  # the server's schema is broken: let the server judge
        return
    problems = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.path)
        if error.validator == "required":
            problems.append(f"argument {error.message.split(chr(39))[1]!r} is missing")
        elif where:
            problems.append(f"argument {where!r}: {error.message}")
        else:
            problems.append(error.message)
    if problems:
        accepted = ", ".join(info.input_schema.get("properties", {})) or "none"
        raise ToolError(f"tool {info.name}: {'; '.join(problems)} (it takes: {accepted})")
