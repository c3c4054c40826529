"""A project's agents read from its source with libcst, never imported.

:func:`read_project` finds the agent classes of a project: the classes named in its
``loom.toml`` (``[agents.<id>] module = "pkg.mod:Class"``), and every class of the
project's Python files that derives from ``Agent`` (directly or through another agent class
of the project), whether the project declares it or starts it in code (the Market Analyst
demo does). Private classes (``_Name``) are skipped: helpers, not agents of the project.
For each class, :class:`_ClassReader` reads the decorators and the ``ctx.emit`` /
``ctx.request`` / ``ctx.tool`` calls of its methods (see :mod:`.model`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .model import AgentModel, Emission, ProjectModel, Subscription, Tool, Unread

__all__ = ["read_project", "read_source", "topic_of"]

_SKIP = {".venv", "venv", "node_modules", "__pycache__", "tests", "build", "dist", ".loom"}
_SENDS = {"emit": "emit", "request": "request", "send": "emit"}


def read_project(folder: str | Path) -> ProjectModel:
    """The project in ``folder`` (its ``loom.toml`` and Python files) as a model."""
    root = Path(folder).resolve()
    config = _config(root)
    model = ProjectModel(str(root), llms=sorted(config.get("llm", {})))
    declared = {
        str(entry.get("module", "")).partition(":")[2]: (agent_id, entry)
        for agent_id, entry in config.get("agents", {}).items()
        if isinstance(entry, dict)
    }
    classes: dict[str, tuple[str, cst.ClassDef, MetadataWrapper, str]] = {}
    for path in _python_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            wrapper = MetadataWrapper(cst.parse_module(path.read_text(encoding="utf-8")))
        except (cst.ParserSyntaxError, UnicodeDecodeError) as exc:
            model.problems.append(f"{relative}: not read ({type(exc).__name__}: {exc})")
            continue
        for node in wrapper.module.body:
            if isinstance(node, cst.ClassDef) and not node.name.value.startswith("_"):
                classes[node.name.value] = (relative, node, wrapper, _module_name(relative))
    readers: dict[int, _ClassReader] = {}  # one per file: positions resolved once
    for name in _agent_classes(classes):
        relative, node, wrapper, module = classes[name]
        agent_id, entry = declared.get(name, (None, {}))
        reader = readers.setdefault(id(wrapper), _ClassReader(wrapper))
        agent = reader.read(node, relative, module)
        if agent_id:
            agent.id, agent.config = agent_id, dict(entry)
        model.agents.append(agent)
    model.agents.sort(key=lambda a: a.id)
    return model


def read_source(source: str, file: str = "agent.py") -> list[AgentModel]:
    """The agent classes of one module's source (every class deriving from ``Agent``)."""
    wrapper = MetadataWrapper(cst.parse_module(source))
    classes = {
        node.name.value: (file, node, wrapper, _module_name(file))
        for node in wrapper.module.body
        if isinstance(node, cst.ClassDef)
    }
    reader = _ClassReader(wrapper)
    return [
        reader.read(classes[name][1], file, _module_name(file)) for name in _agent_classes(classes)
    ]


def topic_of(node: cst.BaseExpression) -> tuple[str, bool] | None:
    """A topic argument as ``(topic, static)``: a literal, or an f-string with ``*`` for
    its run-time parts; None for anything else (a name, a call)."""
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return (value, True) if isinstance(value, str) else None
    if isinstance(node, cst.FormattedString):
        text = "".join(
            part.value if isinstance(part, cst.FormattedStringText) else "\0" for part in node.parts
        )
        # a run-time part that is a whole segment is any one segment: *
        segments = ["*" if "\0" in segment else segment for segment in text.split(".")]
        return ".".join(segments), False
    if isinstance(node, cst.ConcatenatedString):
        left, right = topic_of(node.left), topic_of(node.right)
        if left and right:
            return left[0] + right[0], left[1] and right[1]
    return None


# -- finding the agent classes ---------------------------------------------------------


def _config(root: Path) -> dict[str, Any]:
    path = root / "loom.toml"
    if not path.exists():
        return {}
    with path.open("rb") as file:
        return tomllib.load(file)


def _python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if not any(part in _SKIP or part.startswith(".") for part in parts[:-1]):
            yield path


def _module_name(relative: str) -> str:
    module = relative.removesuffix(".py").replace("/", ".")
    return module.removesuffix(".__init__")


def _bases(node: cst.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        value = base.value
        if isinstance(value, cst.Attribute):
            names.append(value.attr.value)
        elif isinstance(value, cst.Name):
            names.append(value.value)
    return names


def _agent_classes(classes: dict[str, tuple[str, cst.ClassDef, Any, str]]) -> list[str]:
    """Classes deriving from ``Agent``, directly or through other agent classes here."""
    agents: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, (_, node, _, _) in classes.items():
            if name not in agents and any(b == "Agent" or b in agents for b in _bases(node)):
                agents.add(name)
                changed = True
    return sorted(agents)


def _kebab(name: str) -> str:
    """The id the kernel gives a class without one: ``TrendAgent`` -> ``trend-agent``,
    ``HTTPAgent`` -> ``http-agent`` (the rule of ``loom_kernel.agents.agent``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


# -- reading one class -------------------------------------------------------------------


class _ClassReader:
    """Reads one agent class: decorators, its id, and the sends in its methods' bodies."""

    def __init__(self, wrapper: MetadataWrapper):
        self.positions = wrapper.resolve(PositionProvider)

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line if node in self.positions else 0

    def read(self, node: cst.ClassDef, file: str, module: str) -> AgentModel:
        name = node.name.value
        agent = AgentModel(_kebab(name), name, module, file, self.line(node))
        for statement in node.body.body:
            if isinstance(statement, cst.SimpleStatementLine):
                self._class_attribute(statement, agent)
            elif isinstance(statement, cst.FunctionDef):
                self._method(statement, agent)
        return agent

    def _class_attribute(self, line: cst.SimpleStatementLine, agent: AgentModel) -> None:
        for small in line.body:
            if not isinstance(small, cst.Assign | cst.AnnAssign):
                continue
            targets = (
                [t.target for t in small.targets]
                if isinstance(small, cst.Assign)
                else [small.target]
            )
            names = {t.value for t in targets if isinstance(t, cst.Name)}
            value = small.value
            if "id" in names and isinstance(value, cst.SimpleString):
                agent.id = str(value.evaluated_value)
            if "traced" in names and isinstance(value, cst.Name) and value.value == "False":
                agent.observer = True

    def _method(self, method: cst.FunctionDef, agent: AgentModel) -> None:
        name = method.name.value
        for decorator in method.decorators:
            call = decorator.decorator
            callee = call.func if isinstance(call, cst.Call) else call
            callee_name = callee.attr.value if isinstance(callee, cst.Attribute) else (
                callee.value if isinstance(callee, cst.Name) else ""
            )  # fmt: skip
            if callee_name == "on_event" and isinstance(call, cst.Call):
                self._subscription(call, name, agent)
            elif callee_name == "tool":
                args = call.args if isinstance(call, cst.Call) else ()
                found = topic_of(args[0].value) if args else None
                agent.tools.append(Tool(found[0] if found else name, name, self.line(decorator)))
        contexts = _context_names(method)
        for call in _calls(method.body):
            self._send(call, contexts, name, agent)

    def _subscription(self, call: cst.Call, method: str, agent: AgentModel) -> None:
        pattern = topic_of(call.args[0].value) if call.args else None
        qos = "reliable"
        for arg in call.args[1:]:
            if (
                arg.keyword
                and arg.keyword.value == "qos"
                and isinstance(arg.value, cst.SimpleString)
            ):
                qos = str(arg.value.evaluated_value)
        if pattern is None:
            agent.unread.append(
                Unread("@on_event(...)", method, self.line(call), "the pattern is not a literal")
            )
            return
        agent.subscriptions.append(Subscription(pattern[0], method, qos, self.line(call)))

    def _send(self, call: cst.Call, contexts: set[str], method: str, agent: AgentModel) -> None:
        func = call.func
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)):
            return
        if func.value.value not in contexts or not call.args:
            return
        verb, line = func.attr.value, self.line(call)
        found = topic_of(call.args[0].value) if verb != "fan_in" else None
        code = f"{func.value.value}.{verb}({_code(call.args[0].value)}, ...)"
        if found is not None and set(found[0].split(".")) == {"*"}:
            found = None  # no literal segment at all: nothing to draw
        if verb in _SENDS:
            if found is None:
                agent.unread.append(Unread(code, method, line, "the topic is computed at run time"))
            else:
                agent.emissions.append(Emission(found[0], method, _SENDS[verb], found[1], line))
        elif verb == "fan_in":
            self._gathered(call, method, agent)
        elif verb == "tool":
            if found is None:
                agent.unread.append(
                    Unread(code, method, line, "the tool name is computed at run time")
                )
            else:
                agent.tool_calls.append(Tool(found[0], method, line))

    def _gathered(self, call: cst.Call, method: str, agent: AgentModel) -> None:
        patterns = call.args[0].value
        elements = patterns.elements if isinstance(patterns, cst.List | cst.Tuple) else None
        found = [topic_of(element.value) for element in elements or ()]
        if elements is None or None in found:
            code = f"ctx.fan_in({_code(patterns)}, ...)"
            agent.unread.append(Unread(code, method, self.line(call), "the patterns are computed"))
            return
        for topic in found:
            assert topic is not None
            agent.subscriptions.append(
                Subscription(topic[0], method, "reliable", self.line(call), kind="fan_in")
            )


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _context_names(method: cst.FunctionDef) -> set[str]:
    """The method's parameters that hold a Context: named ``ctx`` or annotated Context."""
    names = {"ctx"}
    for param in method.params.params:
        annotation = param.annotation.annotation if param.annotation else None
        if isinstance(annotation, cst.Name) and annotation.value == "Context":
            names.add(param.name.value)
    return names


def _calls(node: cst.CSTNode) -> Iterator[cst.Call]:
    class Finder(cst.CSTVisitor):
        def __init__(self) -> None:
            self.found: list[cst.Call] = []

        def visit_Call(self, call: cst.Call) -> None:
            self.found.append(call)

    finder = Finder()
    node.visit(finder)
    yield from finder.found
