"""The builder on screen: the canvas, a side form, Generate and Run.

:class:`Builder` draws the project its code describes (:func:`~.reader.read_project`)
together with the new agents dropped on the canvas and not generated yet (dashed). A
wire from agent A to agent B gives B a subscription to A's topic: a new agent's spec
changes; an agent already in code gets one new decorated method in its class
(:func:`~.edits.add_subscription`, only added lines). **Generate** writes the new
agents (:func:`~.generate.generate`). **Run** starts the project's declared agents in
this process's runtime (the notebook's, or the studio's), and hot-reloads the ones it
already runs. While shown, the canvas lights up from the studio's feed: each agent's
status, each edge's rate (events per second delivered to the target, over the feed's
window).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import panel as pn
import param
from panel.custom import AnyWidgetComponent

from loom_kernel import TopicError
from loom_kernel.protocol import compile_pattern

from ..feed import StudioFeed, get_feed, topic_family
from ..notebook import InlineViewer
from .edits import EditError, add_subscription, edit_file, rename_topic, set_qos
from .generate import agent_table, generate, set_agent_table
from .model import AgentModel, Emission, ProjectModel, Subscription
from .reader import read_project
from .templates import TEMPLATES, AgentSpec, class_name, module_name

__all__ = ["Builder", "BuilderCanvas"]

log = logging.getLogger("loom.studio.builder")
_COLUMN, _ROW = 310, 84


def _on_page(method: Any) -> Any:
    """Its changes reach a notebook's page in order, once the output is connected (see
    :meth:`InlineViewer.updating_page`); served, they go at once."""

    @functools.wraps(method)
    def changing(self: Builder, *args: Any, **kwargs: Any) -> Any:
        with self.updating_page():
            return method(self, *args, **kwargs)

    return changing


class BuilderCanvas(AnyWidgetComponent):
    """The canvas (``canvas.js``, an anywidget module, shipped in the package)."""

    _esm = Path(__file__).with_name("canvas.js")
    graph = param.Dict(default={})
    palette = param.List(default=[])
    selected = param.String(default="")
    action = param.Dict(default={})
    message = param.String(default="")


class Builder(InlineViewer):
    """The visual agent builder of the project in ``project``.

    Args:
        project: the project's folder (its ``loom.toml`` and agent modules).
        runtime: where Run starts the agents (default: the feed's runtime).
        feed: the studio feed the live rates come from (default: this process's feed).
        refresh_ms: milliseconds between two live updates of the canvas.
    """

    def __init__(
        self,
        project: str | Path = ".",
        *,
        runtime: Any = None,
        feed: StudioFeed | None = None,
        refresh_ms: int = 1000,
        **params: Any,
    ):
        super().__init__(**params)
        self.project = Path(project).resolve()
        self.feed = (
            feed if feed is not None else get_feed(self.project / "loom.toml", runtime=runtime)
        )
        self.runtime = runtime
        self.refresh_ms = refresh_ms
        self.pending: dict[str, AgentSpec] = {}
        self.placed: dict[str, list[float]] = {}
        self.model = ProjectModel(str(self.project))
        palette = [{"name": t.name, "title": t.title} for t in TEMPLATES.values()]
        self.canvas = BuilderCanvas(palette=palette, sizing_mode="stretch_width", min_height=440)
        self.canvas.param.watch(self._on_action, "action")
        self.canvas.param.watch(lambda _: self._show_form(), "selected")
        self.form = pn.Column(width=330)
        self.generate_button = pn.widgets.Button(label="Generate", color="primary")
        self.run_button = pn.widgets.Button(label="Run", color="success")
        self.generate_button.on_click(lambda _: self.generate())
        self.run_button.on_click(lambda _: pn.state.execute(self.run))
        self._callback: Any = None
        self._layout = pn.Column(
            pn.Row(self.generate_button, self.run_button),
            pn.Row(self.canvas, self.form, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self.reload()

    def __panel__(self) -> pn.viewable.Viewable:
        pn.state.onload(self._start)
        return self._layout

    # -- the model -------------------------------------------------------------------------

    @_on_page
    def reload(self) -> None:
        """Read the project's code again and redraw."""
        self.model = read_project(self.project)
        for agent in self.model.agents:
            self.pending.pop(agent.id, None)
        self.redraw()
        self._show_form()
        if self.model.problems:
            self.say("error: " + "; ".join(self.model.problems))

    def combined(self) -> ProjectModel:
        """The project's agents and the new ones, as one model."""
        agents = [*self.model.agents, *(_pending_model(spec) for spec in self.pending.values())]
        return ProjectModel(self.model.folder, agents, self.model.llms, self.model.problems)

    def redraw(self) -> None:
        """Draw the graph again from the code, the pending edits and the live rates."""
        model = self.combined()
        rates = self._delivery_rates()
        nodes = [
            _node(agent, self.pending.get(agent.id), self._status(agent.id))
            for agent in model.agents
        ]
        edges = [
            {"source": e.source, "target": e.target, "topic": e.topic, "pattern": e.pattern,
             "rate": round(rates.get((topic_family(e.topic), e.target), 0.0), 2)}
            for e in model.edges()
            if not model.agent(e.target).observer  # observers watch: not in the flow
        ]  # fmt: skip
        positions = {**_layout(model), **self.placed}
        self.canvas.graph = {"nodes": nodes, "edges": edges, "positions": positions}

    @_on_page
    def say(self, message: str) -> None:
        """Show a message under the canvas."""
        self.canvas.message = message

    # -- what the canvas asks ----------------------------------------------------------------

    @_on_page
    def add(self, template: str, at: tuple[float, float] | None = None) -> str:
        """A new agent of ``template`` on the canvas (not written yet); returns its id.
        ``at``: where it was dropped (default: its place in the layout)."""
        if template not in TEMPLATES:
            raise ValueError(f"no template {template!r}: use one of {', '.join(TEMPLATES)}")
        taken = {a.id for a in self.model.agents} | set(self.pending)
        n = 1
        while f"{template.replace('_', '-')}-{n}" in taken:
            n += 1
        agent_id = f"{template.replace('_', '-')}-{n}"
        emits = TEMPLATES[template].emits
        self.pending[agent_id] = AgentSpec(
            agent_id, template, emit=f"{module_name(agent_id)}.out" if emits else None,
            llm=self.model.llms[0] if self.model.llms else "default",
            tool="add" if template == "tool" else None,
        )  # fmt: skip
        if at is not None:
            self.placed[agent_id] = [max(0.0, at[0]), max(0.0, at[1])]
        self.redraw()
        self.canvas.selected = agent_id
        self.say(f"added {agent_id} ({TEMPLATES[template].title}): wire it, then Generate")
        return agent_id

    @_on_page
    def wire(self, source: str, target: str) -> None:
        """Subscribe ``target`` to ``source``'s topic (its first emitted topic)."""
        model = self.combined()
        emitter = model.agent(source)
        if not emitter.emissions:
            raise ValueError(f"{source} emits nothing the builder can read: give it a topic first")
        topic = emitter.emissions[0].topic
        if target in self.pending:
            spec = self.pending[target]
            if not TEMPLATES[spec.template].subscribes:
                raise ValueError(
                    f"{target} is a {TEMPLATES[spec.template].title}: it subscribes to nothing"
                )
            self.pending[target] = _replace(spec, subscribe=topic)
            self.say(f"{target} now handles {topic}")
        else:
            agent = model.agent(target)
            method = "on_" + "_".join(p for p in topic.replace("-", "_").split(".") if p != "*")
            edit_file(self.project / agent.file, add_subscription, agent.class_name, topic, method)
            self.say(f"{agent.file}: added {agent.class_name}.{method}, handling {topic}")
            self.model = read_project(self.project)
        self.redraw()

    @_on_page
    def update(self, agent_id: str, **changes: Any) -> None:
        """Change a new agent's spec (its form's Apply); checked before it is kept."""
        spec = _replace(self.pending[agent_id], **changes)
        if spec.subscribe:
            compile_pattern(spec.subscribe)
        new_id = spec.id
        if new_id != agent_id:
            AgentSpec(new_id, "sink", subscribe="x").check()  # the id's own rules
            self.pending = {new_id if k == agent_id else k: v for k, v in self.pending.items()}
            self.placed[new_id] = self.placed.pop(agent_id, [30.0, 30.0])
        self.pending[new_id] = spec
        self.redraw()

    @_on_page
    def generate(self) -> list[str]:
        """Write the new agents whose specs are complete; returns the files written."""
        ready, problems = [], []
        for spec in self.pending.values():
            try:
                spec.check()
                ready.append(spec)
            except ValueError as exc:
                problems.append(str(exc))
        result = generate(self.project, ready)
        self.reload()
        written = ", ".join(result.written) or "nothing new"
        declared = (
            f"; declared {', '.join(result.declared)} in loom.toml" if result.declared else ""
        )
        self.say(
            (f"error: {'; '.join(problems)}; " if problems else "") + f"wrote {written}{declared}"
        )
        return result.written

    async def run(self) -> list[str]:
        """Start the project's declared agents here (reload the ones already running)."""
        runtime = self.runtime or self.feed.runtime
        if runtime is None:
            self.say("error: not on a bus yet: try again in a moment")
            return []
        if str(self.project) not in sys.path:
            sys.path.insert(0, str(self.project))
        done = []
        for agent in self.model.agents:
            module = str(agent.config.get("module", ""))
            if not module or agent.observer:
                continue
            try:
                if agent.id in runtime.agents:
                    await runtime.reload(agent.id)
                else:
                    path, _, name = module.partition(":")
                    _forget_other_projects(path, self.project)
                    cls = getattr(importlib.import_module(path), name)
                    await runtime.start(cls(agent.id))
                done.append(agent.id)
            except Exception as exc:  # one agent's fault is said, the others still run
                self.say(f"error: {agent.id}: {type(exc).__name__}: {exc}")
                return done
        self.say(f"running: {', '.join(done) or 'no declared agent (Generate first)'}")
        return done

    # -- the canvas's events, the form, the live refresh ------------------------------------

    @_on_page
    def _on_action(self, event: Any) -> None:
        action = event.new or {}
        try:
            if action.get("kind") == "add":
                self.add(str(action.get("template")), (action.get("x", 30), action.get("y", 30)))
            elif action.get("kind") == "wire":
                self.wire(str(action.get("source")), str(action.get("target")))
        except (ValueError, KeyError, EditError, TopicError) as exc:
            self.say(f"error: {exc}")

    @_on_page
    def _show_form(self) -> None:
        agent_id = self.canvas.selected
        if agent_id in self.pending:
            self.form.objects = _spec_form(self, agent_id)
        elif agent_id:
            try:
                self.form.objects = _code_form(self, self.model.agent(agent_id))
            except KeyError:
                self.form.objects = []
        else:
            self.form.objects = []

    def _start(self) -> None:
        if self._callback is None or not self._callback.running:
            self._callback = pn.state.add_periodic_callback(self._live, period=self.refresh_ms)

    def stop(self) -> None:
        """Stop refreshing the live rates and statuses."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _live(self) -> None:
        try:
            with self.updating_page():
                self.redraw()
        except Exception:
            log.exception("builder refresh failed")

    def _delivery_rates(self) -> dict[tuple[str, str], float]:
        return {
            (source, target): rate
            for (source, target), rate in self.feed.edge_rates().items()
            if self.feed.nodes.get(source) == "topic"
        }

    def _status(self, agent_id: str) -> str:
        return str((self.feed.agents.get(agent_id) or {}).get("status") or "")


def _forget_other_projects(module: str, project: Path) -> None:
    """Drop the imported package of ``module`` when it comes from another folder (the
    ``agents`` package of another project imported earlier in this process)."""
    top = module.split(".")[0]
    loaded = sys.modules.get(top)
    where = getattr(loaded, "__file__", None) or next(iter(getattr(loaded, "__path__", [])), None)
    if loaded is not None and where and not Path(where).resolve().is_relative_to(project):
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]
    importlib.invalidate_caches()


def _replace(spec: AgentSpec, **changes: Any) -> AgentSpec:
    return AgentSpec(**{**spec.__dict__, **changes})


def _pending_model(spec: AgentSpec) -> AgentModel:
    agent = AgentModel(spec.id, class_name(spec.id), f"agents.{module_name(spec.id)}",
                       f"agents/{module_name(spec.id)}.py", 0)  # fmt: skip
    if spec.subscribe:
        agent.subscriptions.append(Subscription(spec.subscribe, "handle", spec.qos))
    agent.subscriptions += [Subscription(p, "gather", kind="fan_in") for p in spec.gather]
    if spec.emit:
        agent.emissions.append(Emission(spec.emit, "handle"))
    return agent


def _node(agent: AgentModel, spec: AgentSpec | None, status: str) -> dict[str, Any]:
    subtitle = f"new: {TEMPLATES[spec.template].title}" if spec else agent.class_name
    return {
        "id": agent.id, "kind": "new" if spec else "code", "observer": agent.observer,
        "status": status, "subtitle": subtitle, "emits": bool(agent.emissions),
    }  # fmt: skip


def _layout(model: ProjectModel) -> dict[str, list[float]]:
    """Columns by depth in the flow (sources left), rows in each column."""
    depth = {agent.id: 0 for agent in model.agents}
    edges = [(e.source, e.target) for e in model.edges() if e.source != e.target]
    for _ in range(len(depth)):  # longest path, bounded: cycles stop growing
        for source, target in edges:
            depth[target] = max(depth[target], min(depth[source] + 1, len(depth)))
    rows: dict[int, int] = {}
    positions = {}
    for agent in model.agents:
        column = depth[agent.id]
        row = rows[column] = rows.get(column, -1) + 1
        positions[agent.id] = [20.0 + column * _COLUMN, 20.0 + row * _ROW]
    return positions


def _spec_form(builder: Builder, agent_id: str) -> list[Any]:
    spec = builder.pending[agent_id]
    template = TEMPLATES[spec.template]
    fields: dict[str, Any] = {"id": pn.widgets.TextInput(label="id", value=spec.id)}
    if template.subscribes:
        fields["subscribe"] = pn.widgets.TextInput(
            label="handles (pattern)", value=spec.subscribe or ""
        )
        fields["qos"] = pn.widgets.Select(
            label="qos", options=["reliable", "realtime", "batched"], value=spec.qos
        )
    if template.emits:
        fields["emit"] = pn.widgets.TextInput(label="emits (topic)", value=spec.emit or "")
    if "llm" in template.needs:
        fields["llm"] = pn.widgets.TextInput(label="LLM ([llm.<name>])", value=spec.llm or "")
    if "tool" in template.needs:
        fields["tool"] = pn.widgets.TextInput(label="tool", value=spec.tool or "")
    check = pn.pane.Markdown("", css_classes=["loom-builder-check"])

    def validate(_: Any) -> None:
        pattern = fields["subscribe"].value if "subscribe" in fields else ""
        try:
            if pattern:
                compile_pattern(pattern)
            check.object = f"`{pattern}` is a valid pattern" if pattern else ""
        except TopicError as exc:
            check.object = f"**{exc}**"

    def apply(_: Any) -> None:
        try:
            builder.update(agent_id, **{name: w.value or None for name, w in fields.items()})
            builder.say(f"{fields['id'].value}: updated")
        except (ValueError, TopicError) as exc:
            check.object = f"**{exc}**"

    if "subscribe" in fields:
        fields["subscribe"].param.watch(validate, "value_input")
    button = pn.widgets.Button(label="Apply", color="primary")
    button.on_click(apply)
    return [pn.pane.Markdown(f"### {agent_id}\n{template.title}, not generated yet"),
            *fields.values(), check, button]  # fmt: skip


def _code_form(builder: Builder, agent: AgentModel) -> list[Any]:
    """An agent in code: where it is, what it handles and sends, and the edits to make."""
    lines = [f"### {agent.id}", f"`{agent.class_name}` in `{agent.file}`, line {agent.line}"]
    lines += [f"- {e.kind}s `{e.topic}` in `{e.method}`" for e in agent.emissions]
    lines += [f"- not read: `{u.what}` (line {u.line}): {u.reason}" for u in agent.unread]
    return [
        pn.pane.Markdown("\n".join(lines)),
        *_qos_widgets(builder, agent),
        *_subscribe_widgets(builder, agent),
        *_rename_widgets(builder, agent),
        *_config_widgets(builder, agent),
    ]


def _edit(builder: Builder, agent: AgentModel, done: str, edit: Any, *args: Any) -> None:
    """Apply one edit to the agent's file, read the project again, say what happened."""
    try:
        changed = edit_file(builder.project / agent.file, edit, *args)
        builder.reload()
        builder.say(f"{agent.file}: {done}" if changed else f"{agent.file}: nothing to change")
    except (EditError, OSError, TopicError) as exc:
        builder.say(f"error: {exc}")


def _qos_widgets(builder: Builder, agent: AgentModel) -> list[Any]:
    """One QoS choice per handler: a change rewrites that decorator's ``qos=``."""
    widgets = []
    for sub in agent.subscriptions:
        if sub.kind != "on_event":
            widgets.append(pn.pane.Markdown(f"gathers `{sub.pattern}` in `{sub.method}`"))
            continue
        choice = pn.widgets.Select(
            label=f"handles {sub.pattern} in {sub.method}",
            options=["reliable", "realtime", "batched"], value=sub.qos,
        )  # fmt: skip

        def change(event: Any, sub: Subscription = sub) -> None:
            done = f"{sub.method} now {event.new}"
            _edit(builder, agent, done, set_qos, agent.class_name, sub.method, event.new)

        choice.param.watch(change, "value")
        widgets.append(choice)
    return widgets


def _subscribe_widgets(builder: Builder, agent: AgentModel) -> list[Any]:
    pattern = pn.widgets.TextInput(label="add a subscription (pattern)", placeholder="news.*")
    method = pn.widgets.TextInput(label="method", placeholder="on_news")
    button = pn.widgets.Button(label="Add to the code", color="primary")
    button.on_click(
        lambda _: _edit(
            builder, agent, f"added {agent.class_name}.{method.value}", add_subscription,
            agent.class_name, pattern.value, method.value or "on_event_",
        )
    )  # fmt: skip
    return [pattern, method, button]


def _rename_widgets(builder: Builder, agent: AgentModel) -> list[Any]:
    topics = sorted({e.topic for e in agent.emissions} | {s.pattern for s in agent.subscriptions})
    if not topics:
        return []
    old = pn.widgets.Select(label="rename a topic", options=topics, value=topics[0])
    new = pn.widgets.TextInput(label="to", placeholder="orders.plan.*")
    button = pn.widgets.Button(label="Rename in the code", color="primary")
    button.on_click(
        lambda _: _edit(
            builder, agent, f"{old.value} renamed {new.value}", rename_topic, old.value, new.value
        )
    )
    return [old, new, button]


def _config_widgets(builder: Builder, agent: AgentModel) -> list[Any]:
    """The agent's ``[agents.<id>]`` table of loom.toml, to edit (checked by the kernel)."""
    table = pn.widgets.TextAreaInput(
        label=f"loom.toml [agents.{agent.id}]", value=agent_table(builder.project, agent.id),
        height=110, placeholder='module = "agents.mine:Mine"',
    )  # fmt: skip
    button = pn.widgets.Button(label="Save to loom.toml", color="primary")

    def save(_: Any) -> None:
        try:
            set_agent_table(builder.project, agent.id, table.value)
            builder.reload()
            builder.say(f"loom.toml: [agents.{agent.id}] saved")
        except ValueError as exc:
            builder.say(f"error: {exc}")

    button.on_click(save)
    return [table, button]
