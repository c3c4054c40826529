"""Canvas edits applied to the user's code, surgically, with libcst.

Every edit parses the module into a concrete syntax tree, changes only the nodes it
names, and writes the module back: comments, blank lines, quotes and formatting
elsewhere stay byte for byte, and handler bodies the user wrote are never touched.

- :func:`add_subscription`: one new decorated method at the end of the agent's class
  (and, if the module lacks them, one added import line);
- :func:`set_qos`: the ``qos=`` of one handler's ``@on_event``;
- :func:`rename_topic`: a topic's literals in ``@on_event`` patterns and in
  ``ctx.emit`` / ``ctx.request`` calls, f-strings included when only their literal
  prefix changes; every other string stays as it is.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from loom_kernel import TopicError
from loom_kernel.protocol import compile_pattern

from .reader import topic_of

__all__ = ["EditError", "add_subscription", "edit_file", "rename_topic", "set_qos"]

_SENDS = {"emit", "request", "send"}


class EditError(ValueError):
    """An edit that cannot be made: the message says why and what to do."""


def edit_file(path: str | Path, edit: object, *args: object, **kwargs: object) -> bool:
    """Apply ``edit(source, *args, **kwargs)`` to the file; True when it changed."""
    file = Path(path)
    source = file.read_text(encoding="utf-8")
    changed = edit(source, *args, **kwargs)  # type: ignore[operator]
    if changed == source:
        return False
    file.write_text(changed, encoding="utf-8")
    return True


def add_subscription(
    source: str, class_name: str, pattern: str, method: str, *, qos: str = "reliable"
) -> str:
    """``source`` with a new ``@on_event(pattern)`` handler ``method`` in ``class_name``."""
    try:
        compile_pattern(pattern)
    except TopicError as exc:
        raise EditError(f"pattern {pattern!r}: {exc}") from None
    if not method.isidentifier():
        raise EditError(f"{method!r} is not a method name: use letters, digits and '_'")
    module = cst.parse_module(source)
    target = _find_class(module, class_name)
    if any(isinstance(s, cst.FunctionDef) and s.name.value == method for s in target.body.body):
        raise EditError(f"{class_name} has a method {method!r} already: choose another name")
    qos_arg = "" if qos == "reliable" else f', qos="{qos}"'
    handler = cst.parse_statement(
        f'@on_event("{pattern}"{qos_arg})\n'
        f"async def {method}(self, event: Envelope, ctx: Context) -> None:\n"
        f'    """Handle ``{pattern}``."""\n'
    )
    assert isinstance(handler, cst.FunctionDef)
    handler = handler.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
    new_class = target.with_changes(
        body=target.body.with_changes(body=[*target.body.body, handler])
    )
    module = module.deep_replace(target, new_class)
    assert isinstance(module, cst.Module)
    return _with_imports(module, ["on_event", "Envelope", "Context"]).code


def set_qos(source: str, class_name: str, method: str, qos: str) -> str:
    """``source`` with ``qos`` on the ``@on_event`` of ``class_name.method`` (the
    decorator's other arguments, and everything else, as they were)."""
    if qos not in ("reliable", "realtime", "batched"):
        raise EditError(f"qos {qos!r}: use reliable, realtime or batched")
    module = cst.parse_module(source)
    target = _find_class(module, class_name)
    handler = next(
        (s for s in target.body.body if isinstance(s, cst.FunctionDef) and s.name.value == method),
        None,
    )
    calls = [
        d for d in (handler.decorators if handler else ())
        if isinstance(d.decorator, cst.Call) and _name(d.decorator.func) == "on_event"
    ]  # fmt: skip
    if handler is None or len(calls) != 1:
        raise EditError(f"{class_name}.{method} has no single @on_event to change")
    call = calls[0].decorator
    assert isinstance(call, cst.Call)
    value = cst.SimpleString(f'"{qos}"')
    args = [a for a in call.args if not (a.keyword and a.keyword.value == "qos")]
    if qos != "reliable":  # the default: said by leaving it out
        kept = [a for a in call.args if a.keyword and a.keyword.value == "qos"]
        qos_arg = kept[0].with_changes(value=value) if kept else cst.Arg(
            value, keyword=cst.Name("qos"),
            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
        )  # fmt: skip
        args.insert(1, qos_arg)
    if args:
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    args = [
        a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        if i < len(args) - 1
        else a
        for i, a in enumerate(args)
    ]
    new_decorator = calls[0].with_changes(decorator=call.with_changes(args=args))
    return module.deep_replace(calls[0], new_decorator).code  # type: ignore[union-attr]


def _name(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return node.value if isinstance(node, cst.Name) else ""


def rename_topic(source: str, old: str, new: str) -> str:
    """``source`` with the topic (or pattern) ``old`` renamed ``new`` where it is sent or
    subscribed to. An f-string topic is renamed when its literal start is ``old``'s part
    before its first ``*`` and the rest matches (``plan.*`` -> ``orders.plan.*``)."""
    for topic in (old, new):
        try:
            compile_pattern(topic)
        except TopicError as exc:
            raise EditError(f"topic {topic!r}: {exc}") from None
    module = cst.parse_module(source)
    return module.visit(_Renamer(old, new)).code


class _Renamer(cst.CSTTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new
        old_head, _, old_tail = old.partition("*")
        new_head, _, new_tail = new.partition("*")
        self.heads = (old_head, new_head) if "*" in old and old_tail == new_tail else None

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        func = updated.func
        name = func.attr.value if isinstance(func, cst.Attribute) else (
            func.value if isinstance(func, cst.Name) else ""
        )  # fmt: skip
        if (name not in _SENDS and name != "on_event") or not updated.args:
            return updated
        first = updated.args[0]
        renamed = self._renamed(first.value)
        if renamed is None:
            return updated
        return updated.with_changes(args=[first.with_changes(value=renamed), *updated.args[1:]])

    def _renamed(self, node: cst.BaseExpression) -> cst.BaseExpression | None:
        found = topic_of(node)
        if found is None or found[0] != self.old:
            return None
        if isinstance(node, cst.SimpleString):
            quote = node.quote
            return node.with_changes(value=f"{node.prefix}{quote}{self.new}{quote}")
        if isinstance(node, cst.FormattedString) and self.heads is not None:
            first = node.parts[0] if node.parts else None
            old_head, new_head = self.heads
            if isinstance(first, cst.FormattedStringText) and first.value.startswith(old_head):
                text = new_head + first.value[len(old_head) :]
                return node.with_changes(parts=[first.with_changes(value=text), *node.parts[1:]])
        return None


def _find_class(module: cst.Module, name: str) -> cst.ClassDef:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == name:
            return statement
    classes = [s.name.value for s in module.body if isinstance(s, cst.ClassDef)]
    raise EditError(f"no class {name!r} in this module (classes: {', '.join(classes) or 'none'})")


def _with_imports(module: cst.Module, names: list[str]) -> cst.Module:
    """Add ``from loom_kernel import <missing>`` as one new line after the module's
    ``loom_kernel`` import (or its last import), leaving every existing line as it is."""
    imported = set()
    last_import = kernel_import = -1
    for index, statement in enumerate(module.body):
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.ImportFrom | cst.Import):
                    last_import = index
                if isinstance(small, cst.ImportFrom) and _dotted(small.module) == "loom_kernel":
                    kernel_import = index
                if isinstance(small, cst.ImportFrom) and not isinstance(
                    small.names, cst.ImportStar
                ):
                    imported |= {
                        alias.evaluated_alias or alias.evaluated_name for alias in small.names
                    }
    missing = sorted(name for name in names if name not in imported)
    if not missing:
        return module
    line = cst.parse_statement(f"from loom_kernel import {', '.join(missing)}\n")
    body = list(module.body)
    body.insert((kernel_import if kernel_import >= 0 else last_import) + 1, line)
    return module.with_changes(body=body)


def _dotted(node: cst.BaseExpression | None) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""
