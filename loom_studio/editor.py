"""The live editor: an agent's source in a code editor; Save writes the file and swaps the
new code into the running agents (:mod:`~loom_studio.code_reload`), wherever they run.

Code that does not load (a syntax error, an exception while the module runs...) changes
nothing in the running system: the old version goes on handling events, and the editor
marks the faulty line (an error annotation in the gutter) and says what is wrong. Every
save is a version in the project's ``.loom/editor/<agent>/`` (:mod:`~loom_studio.versions`):
pick one to see its diff against the editor's text, and revert to it (written and reloaded
like a save).

Editable agents are those whose module is a file of the project
(:mod:`~loom_studio.agent_sources`).

>>> from loom_studio import Editor             # doctest: +SKIP
>>> Editor(runtime=rt)                          # a notebook cell
"""

from __future__ import annotations

import contextlib
import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn

from .ace_modules import ace_modules_script
from .agent_sources import AgentSource, project_agents
from .code_reload import ReloadOutcome, reload_module
from .notebook import InlineViewer
from .topic_index import TopicIndex, get_topic_index
from .versions import VersionHistory, unified_diff

if TYPE_CHECKING:
    from loom_kernel import LoomConfig, Runtime

__all__ = ["EDITOR_FOLDER", "Editor", "diff_html"]

log = logging.getLogger("loom.studio")

EDITOR_FOLDER = ".loom/editor"
REFRESH_MS = 1000
_DIFF_COLORS = {"+": "#1b5e20", "-": "#b71c1c", "@": "#1565c0"}


def diff_html(diff: str) -> str:
    """A unified diff as coloured HTML."""
    if not diff:
        return "<small>no difference</small>"
    lines = []
    for line in diff.splitlines():
        header = line.startswith(("+++", "---"))
        color = "#555" if header else _DIFF_COLORS.get(line[:1], "#333")
        lines.append(f'<span style="color:{color}">{html.escape(line)}</span>')
    return (
        '<pre style="font-size:12px;margin:0;white-space:pre-wrap">' + "\n".join(lines) + "</pre>"
    )


class Editor(InlineViewer):
    """Edit an agent's source and swap it into the running agents.

    Args:
        runtime: the runtime on the project's bus (reloads go through it).
        config: the project's settings; default: the runtime's.
        index: where the agents' heartbeats are read (which module each runs, and where).
        agent: the agent to open first (default: the first editable one).
        refresh_ms: milliseconds between two looks at the running agents, once shown.

    Raises:
        KeyError: ``agent`` is not an editable agent of the project.

    ``save()``, ``revert(n)``, ``show_diff(n)`` and ``set_code(text)`` do from Python what the
    page's buttons do.
    """

    def __init__(
        self,
        *,
        runtime: Runtime,
        config: LoomConfig | None = None,
        index: TopicIndex | None = None,
        agent: str | None = None,
        refresh_ms: int = REFRESH_MS,
        **params: Any,
    ):
        super().__init__(**params)
        self.runtime = runtime
        self.config = config or runtime.config
        self.index = index if index is not None else get_topic_index(runtime)
        self.refresh_ms = refresh_ms
        self.sources: dict[str, AgentSource] = {}
        self.source: AgentSource | None = None
        self.history: VersionHistory | None = None
        self.last: ReloadOutcome | None = None
        self._callback: Any = None
        self._build()
        self.refresh()
        if agent or self.sources:
            self.open(agent or next(iter(self.sources)))

    def _build(self) -> None:
        self.agent = pn.widgets.Select(label="Agent", options=[], width=220)
        self.where = pn.pane.HTML("", margin=(25, 10))
        self.code = pn.widgets.CodeEditor(
            language="python", theme="github_light_default", height=480,
            sizing_mode="stretch_width", soft_tabs=True,
        )  # fmt: skip
        self.save_button = pn.widgets.Button(label="Save and reload", color="primary", width=150)
        self.status = pn.pane.Alert("", alert_type="info", visible=False, margin=(5, 10))
        self.versions = pn.widgets.Select(label="Version", options={}, width=300)
        self.diff = pn.pane.HTML("", sizing_mode="stretch_width", max_height=420,
                                 styles={"overflow": "auto"})  # fmt: skip
        self.revert_button = pn.widgets.Button(label="Revert to this version", width=190)
        self.agent.param.watch(self._on_agent, "value")
        self.versions.param.watch(lambda e: self._show_diff(e.new), "value")
        self.save_button.on_click(self._on_save)
        self.revert_button.on_click(self._on_revert)
        history = pn.Column(
            pn.pane.HTML("<b>History</b> <small>(diff: the version → the editor)</small>"),
            self.versions, self.revert_button, self.diff, width=520,
        )  # fmt: skip
        self._layout = pn.Column(
            pn.Row(self.agent, self.where, sizing_mode="stretch_width"),
            pn.Row(
                pn.Column(self.code, pn.Row(self.save_button), self.status,
                          sizing_mode="stretch_width"),
                history, sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )  # fmt: skip

    def __panel__(self) -> pn.viewable.Viewable:
        pn.state.onload(self._start)
        return self._layout

    def output_script(self) -> str:
        """In a notebook: Ace's Python mode, theme and snippets, embedded (ace_modules)."""
        language, theme = self.code.language, self.code.theme
        return ace_modules_script([f"mode/{language}", f"theme/{theme}", f"snippets/{language}"])

    # -- which agents ---------------------------------------------------------------------

    def running_agents(self) -> dict[str, dict[str, Any]]:
        """The agents running now (id -> heartbeat-like record), this process's included."""
        found = {agent_id: dict(beat) for agent_id, beat in self.index.agents.items()}
        for agent_id, runner in self.runtime.agents.items():
            if runner.status not in ("stopped", "failed") and not runner.agent.id.startswith(
                "studio-"
            ):
                cls = type(runner.agent)
                code = {"module": cls.__module__, "class": cls.__qualname__,
                        "version": runner.version}  # fmt: skip
                found[agent_id] = {**found.get(agent_id, {}), **code}
        return found

    def refresh(self) -> None:
        """Take in agents started since, and the running version of the open one."""
        self.sources = project_agents(self.config, self.running_agents())
        options = sorted(self.sources)
        with self.updating_page():
            if options != self.agent.options:
                self.agent.options = options
            if self.source is not None:
                self._show_where()

    def _show_where(self) -> None:
        if self.source is None:
            return
        beat = self.running_agents().get(self.source.agent, {})
        version = beat.get("version")
        running = f"running version {version}" if version else "not running"
        path = self.source.path
        with contextlib.suppress(ValueError):  # shown from the project's folder
            path = path.relative_to(self.config.project_dir.resolve())
        self.where.object = (
            f"<code>{html.escape(str(path))}</code> &nbsp; "
            f"<small>{html.escape(self.source.module)}, {running}</small>"
        )

    # -- editing ----------------------------------------------------------------------------

    def open(self, agent: str) -> None:
        """Show an agent's source (its file as it is now).

        Raises:
            KeyError: not an editable agent of the project.
        """
        with self.updating_page():  # in a notebook: after what the page has not yet got
            self._open(agent)

    def _on_agent(self, event: Any) -> None:
        if event.new and event.new != (self.source.agent if self.source else None):
            self.open(event.new)

    def set_code(self, text: str) -> None:
        """Put ``text`` in the editor, as typing it would (nothing is saved)."""
        with self.updating_page():
            self.code.value = text

    def _open(self, agent: str) -> None:
        if agent not in self.sources:
            known = ", ".join(self.sources) or "none"
            raise KeyError(f"{agent!r} is not an editable agent of this project ({known})")
        self.source = self.sources[agent]
        root = self.config.project_path(EDITOR_FOLDER)
        self.history = VersionHistory(root, agent)
        text = self.source.path.read_text()
        self.history.record(text, "opened")
        self.agent.value = agent
        self.code.annotations = []
        self.code.value = text
        self.status.visible = False
        self._show_where()
        self._list_versions()

    def _list_versions(self) -> None:
        if self.history is None:
            return
        versions = self.history.versions()
        self.versions.options = {v.label: v.number for v in reversed(versions)}
        if versions:  # the one before the newest: the diff shows the last change
            shown = versions[-2 if len(versions) > 1 else -1].number
            self.versions.value = shown
            self._show_diff(shown)

    def show_diff(self, number: int | None) -> str:
        """The diff from version ``number`` to the editor's text, shown; the diff."""
        with self.updating_page():
            return self._show_diff(number)

    def _show_diff(self, number: int | None) -> str:
        if self.history is None or number is None or self.source is None:
            return ""
        diff = unified_diff(
            self.history.read(number), self.code.value, f"version {number}", "editor"
        )
        self.diff.object = diff_html(diff)
        return diff

    async def save(self, note: str = "saved") -> ReloadOutcome | None:
        """Write the editor's text to the agent's file and reload it everywhere it runs."""
        if self.source is None or self.history is None:
            return None
        text = self.code.value
        _write(self.source.path, text)
        version = self.history.record(text, note)
        with self.updating_page():
            self._say(f"saved version {version}; reloading {self.source.module}…", "info")
        outcome = await reload_module(self.runtime, self.source.module, self.index.agents)
        self.last = outcome
        with self.updating_page():
            self._report(outcome, version)
            self._list_versions()
        return outcome

    async def revert(self, number: int) -> ReloadOutcome | None:
        """Put version ``number`` back in the file and reload it."""
        if self.history is None:
            return None
        self.set_code(self.history.read(number))
        return await self.save(f"revert to {number}")

    def _report(self, outcome: ReloadOutcome, version: int) -> None:
        path = self.source.path if self.source else None
        if not outcome.ok:
            line = outcome.line if path and _same_file(outcome.file, path) else None
            error = str(outcome.error).removeprefix(f"{outcome.file}:{outcome.line}: ")
            self.code.annotations = (
                [{"row": line - 1, "column": 0, "text": error, "type": "error"}] if line else []
            )
            where = f"line {line}: " if line else ""
            self._say(
                f"{where}{error} (version {version} saved, not running: the previous "
                "version goes on handling events)",
                "danger",
            )
            return
        self.code.annotations = []
        if not outcome.versions and outcome.silent:
            silent = ", ".join(outcome.silent)
            self._say(f"version {version} saved; {silent} did not answer in time", "warning")
            return
        if not outcome.versions:
            self._syntax_check(version)
            return
        agents = ", ".join(f"{a} → v{v}" for a, v in sorted(outcome.versions.items()))
        late = f"; no answer from {', '.join(outcome.silent)}" if outcome.silent else ""
        self._say(f"version {version} running: {agents} ({outcome.seconds * 1000:.0f} ms){late}",
                  "warning" if late else "success")  # fmt: skip
        self._show_where()

    def _syntax_check(self, version: int) -> None:
        """Nothing runs the module: at least say whether it compiles."""
        if self.source is None:
            return
        try:
            compile(self.code.value, str(self.source.path), "exec")
        except SyntaxError as exc:
            line = exc.lineno or 1
            self.code.annotations = [{"row": line - 1, "column": 0, "text": exc.msg,
                                      "type": "error"}]  # fmt: skip
            self._say(f"line {line}: syntax error: {exc.msg} (version {version} saved)", "danger")
            return
        self._say(f"version {version} saved; no running agent runs {self.source.module}", "info")

    def _say(self, text: str, kind: str) -> None:
        self.status.object = html.escape(text)
        self.status.alert_type = kind
        self.status.visible = True

    async def _on_save(self, event: Any) -> None:
        await self.save()

    async def _on_revert(self, event: Any) -> None:
        if self.versions.value is not None:
            await self.revert(int(self.versions.value))

    # -- refreshing -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the periodic refresh runs."""
        return self._callback is not None and self._callback.running

    def stop(self) -> None:
        """Stop refreshing (a served page stops by itself when its session ends)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _start(self) -> None:
        if not self.running:
            self._callback = pn.state.add_periodic_callback(self._refresh, period=self.refresh_ms)

    def _refresh(self) -> None:
        try:
            self.refresh()
        except Exception:  # a bad refresh must not end the page's updates: log, go on
            log.exception("editor refresh failed")


def _write(path: Path, text: str) -> None:
    """Replace the file's content in one step (a watcher never reads half a file)."""
    partial = path.with_name(f".{path.name}.saving")
    partial.write_text(text)
    partial.replace(path)


def _same_file(file: str | None, path: Path) -> bool:
    return file is not None and Path(file).resolve() == path.resolve()
