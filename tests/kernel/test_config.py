"""``loom.toml``: finding it and mapping it onto typed settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom_kernel.config import LoomConfig, find_config, load_config, parse_config
from loom_kernel.errors import ConfigError


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no ``loom.toml`` in it or above it, and no $LOOM_CONFIG."""
    folder = tmp_path / "no-project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    if find_config() is not None:
        pytest.skip(f"a loom.toml above the temporary folder: {find_config()}")
    return folder


def test_defaults_without_a_file(empty_dir: Path) -> None:
    config = load_config()
    assert config == LoomConfig()
    assert config.path is None
    assert config.project_dir == empty_dir
    assert config.bus.url is None
    assert config.bus.mode == "auto"
    assert config.bus.hwm == 100_000
    assert config.bus.connect_timeout == 5.0
    assert config.runtime.heartbeat_interval == 1.0
    assert config.runtime.max_hops == 32


def test_project_fixture_file_is_found(project: Path) -> None:
    config = load_config()
    assert config.path == (project / "loom.toml").resolve()
    assert config.project_dir == project.resolve()
    assert config.runtime.heartbeat_interval == 0.2
    assert config.runtime.idle_after == 5.0  # untouched keys keep their defaults


def test_loom_config_env_var_names_the_file(
    empty_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere" / "custom.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('[bus]\nurl = "tcp://127.0.0.1:7400"\nmode = "connect"\n')
    monkeypatch.setenv("LOOM_CONFIG", str(elsewhere))
    config = load_config()
    assert config.path == elsewhere.resolve()
    assert config.bus.url == "tcp://127.0.0.1:7400"
    assert config.bus.mode == "connect"


def test_loom_config_env_var_wins_over_nearest_file(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("[runtime]\nmax_hops = 4\n")
    monkeypatch.setenv("LOOM_CONFIG", str(chosen))
    assert load_config().runtime.max_hops == 4


def test_loom_config_env_var_to_a_missing_file(
    empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = empty_dir / "nope.toml"
    monkeypatch.setenv("LOOM_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="no such file") as caught:
        load_config()
    assert str(missing) in str(caught.value)


def test_nearest_loom_toml_upward_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    (tmp_path / "loom.toml").write_text("[runtime]\nmax_hops = 1\n")
    project = tmp_path / "project"
    deep = project / "src" / "agents"
    deep.mkdir(parents=True)
    (project / "loom.toml").write_text("[runtime]\nmax_hops = 2\n")
    monkeypatch.chdir(deep)
    config = load_config()
    assert config.path == (project / "loom.toml").resolve()
    assert config.runtime.max_hops == 2
    assert config.project_dir == project.resolve()
    assert find_config(tmp_path) == tmp_path / "loom.toml"


def test_explicit_path_wins(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[runtime]\nmax_hops = 9\n")
    assert load_config(other).runtime.max_hops == 9
    assert load_config(str(other)).runtime.max_hops == 9


def test_missing_explicit_file(empty_dir: Path) -> None:
    missing = empty_dir / "missing.toml"
    with pytest.raises(ConfigError, match="no such file: create it with `loom init`") as caught:
        load_config(missing)
    assert caught.value.path == str(missing)
    assert str(missing) in str(caught.value)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "loom.toml"
    bad.write_text("[runtime\nheartbeat_interval = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(bad)
    assert str(caught.value).startswith(f"{bad}: ")
    assert caught.value.path == str(bad)


def test_config_file_not_utf8_gives_config_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "loom.toml"
    bad.write_bytes(b"# caf\xe9 settings\n[runtime]\nmax_hops = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("[runtime]\nheartbeat_intervall = 1\n", "did you mean 'heartbeat_interval'?"),
        ("[runtime]\nheartbeat = 1\n", "did you mean 'heartbeat_interval'?"),
        ("[runtime]\nmax_hop = 3\n", "did you mean 'max_hops'?"),
        ("[bus]\nulr = 'tcp://127.0.0.1:1'\n", "did you mean 'url'?"),
        ("[bus]\nconnect_timout = 1\n", "did you mean 'connect_timeout'?"),
        ("[buss]\nurl = 'tcp://127.0.0.1:1'\n", "did you mean 'bus'?"),
        ("[runtim]\nmax_hops = 3\n", "did you mean 'runtime'?"),
    ],
)
def test_unknown_key_suggests_nearest_valid_one(tmp_path: Path, text: str, hint: str) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match="unknown key") as caught:
        load_config(file)
    message = str(caught.value)
    assert hint in message
    assert str(file) in message


def test_unknown_key_names_its_section(tmp_path: Path) -> None:
    file = tmp_path / "loom.toml"
    file.write_text("[runtime]\nheartbeat_intervall = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'heartbeat_intervall' in \[runtime\]"):
        load_config(file)


def test_unknown_key_without_a_near_match_lists_valid_keys(tmp_path: Path) -> None:
    file = tmp_path / "loom.toml"
    file.write_text("[bus]\nzzzzzz = 1\n")
    with pytest.raises(ConfigError, match="valid keys: url, mode, hwm, connect_timeout"):
        load_config(file)


def test_unknown_top_level_key_is_placed_at_the_top_level(tmp_path: Path) -> None:
    file = tmp_path / "loom.toml"
    file.write_text("verbose = true\n")
    with pytest.raises(ConfigError, match="unknown key 'verbose' in the top level"):
        load_config(file)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[runtime]\nheartbeat_interval = "fast"\n', "[runtime] heartbeat_interval"),
        ("[runtime]\nheartbeat_interval = 0\n", "[runtime] heartbeat_interval"),
        ('[runtime]\nmax_hops = "many"\n', "[runtime] max_hops"),
        ("[bus]\nhwm = 10\n", "[bus] hwm"),
        ('[bus]\nmode = "sometimes"\n', "[bus] mode"),
        ("[bus]\nurl = 7355\n", "[bus] url"),
        ("bus = 5\n", "bus"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    message = str(caught.value)
    assert f"{key} = " in message
    assert str(file) in message


def test_parse_config_without_a_file() -> None:
    config = parse_config({"runtime": {"max_hops": 7}})
    assert config.runtime.max_hops == 7
    assert config.path is None
    with pytest.raises(ConfigError, match="did you mean 'max_hops'") as caught:
        parse_config({"runtime": {"max_hop": 7}})
    assert caught.value.path is None


def test_settings_are_frozen(empty_dir: Path) -> None:
    config = load_config()
    with pytest.raises(ValueError, match="frozen"):
        config.runtime.max_hops = 3  # type: ignore[misc]


# -- capability sections ---------------------------------------------------------------

FULL = """
[llm.deepseek]
model = "deepseek/deepseek-chat"
api_key_env = "DEEPSEEK_API_KEY"
temperature = 0.2
top_p = 0.9

[llm.local]
model = "openai/qwen"
api_base = "http://127.0.0.1:8000/v1"

[router]
models = ["deepseek", "local"]
strategy = "latency-based-routing"
fallbacks = ["local"]

[mcp.time]
command = "python"
args = ["-m", "mcp_server_time"]

[mcp.remote]
url = "http://127.0.0.1:9000/mcp"
headers = { Authorization = "Bearer x" }

[agents.planner]
module = "agents.planner:Planner"
group = "brains"
settings = { window = 300, symbols = ["AAPL"] }

[memory]
path = "state/memory.db"
short_term_size = 50

[tracing]
sample_ratio = 0.5
otlp_endpoint = "http://localhost:4318"
"""


def test_every_capability_section_maps_onto_typed_settings(tmp_path: Path) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(FULL)
    config = load_config(file)
    deepseek = config.llm["deepseek"]
    assert deepseek.model == "deepseek/deepseek-chat"
    assert deepseek.api_key_env == "DEEPSEEK_API_KEY"
    assert deepseek.extra_params == {"top_p": 0.9}  # passed through to litellm
    assert config.router.models == ["deepseek", "local"]
    assert config.mcp["time"].transport == "stdio"
    assert config.mcp["remote"].transport == "streamable-http"
    assert config.mcp["remote"].headers == {"Authorization": "Bearer x"}
    assert config.agents["planner"].settings == {"window": 300, "symbols": ["AAPL"]}
    assert config.memory.short_term_size == 50
    assert config.project_path(config.memory.path) == tmp_path.resolve() / "state" / "memory.db"
    assert config.tracing.sample_ratio == 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"llm": {"d": {"model": "x", "temprature": 1}}},
            "[llm.d] unknown key 'temprature' (did you mean 'temperature'?)",
        ),
        (
            {"llm": {"d": {"api_base": "http://x"}}},
            "[llm.d] has no 'model': add `model = \"deepseek/deepseek-chat\"`",
        ),
        ({"llm": {"d": {"model": "x", "temperature": 9}}}, "[llm.d] temperature = 9"),
        ({"mcp": {"t": {"args": ["-m", "x"]}}}, "[mcp.t] set exactly one of command"),
        (
            {"mcp": {"t": {"command": "x", "argz": []}}},
            "unknown key 'argz' in [mcp.t]: did you mean 'args'?",
        ),
        ({"memory": {"pth": "x"}}, "unknown key 'pth' in [memory]: did you mean 'path'?"),
        ({"memory": {"max_items": 0}}, "[memory] max_items = 0: Input should be greater than"),
        ({"memory": {"max_items": 1.5}}, "[memory] max_items = 1.5: a whole number is expected"),
        ({"memory": {"max_mb": -1}}, "[memory] max_mb = -1: Input should be greater than 0"),
        (
            {"router": {"models": ["ghost"]}},
            "[router] models names 'ghost', which is not an [llm.*] entry",
        ),
        ({"router": {"strategy": "fastest"}}, "[router] strategy = 'fastest'"),
        ({"llm": {"bad name": {"model": "x"}}}, "bad name 'bad name'"),
        ({"llm": {"router": {"model": "x"}}}, "[llm.router]: 'router' is the name of the [router]"),
        ({"agents": {"a": {"restart": "sometimes"}}}, "[agents.a] restart = 'sometimes'"),
    ],
)
def test_bad_capability_settings_say_what_to_fix(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_agent_settings_reach_the_agent_context(project: Path) -> None:
    import asyncio

    from loom_kernel import Agent, open_runtime

    config = parse_config({"agents": {"planner": {"settings": {"window": 60}}}})
    seen: dict[str, dict] = {}

    class Reader(Agent):
        async def on_start(self, ctx) -> None:
            seen[self.id] = ctx.settings

    async def settings() -> None:
        async with open_runtime(config) as rt:
            await rt.start(Reader("planner"), Reader("other"))

    asyncio.run(settings())
    assert seen == {"planner": {"window": 60}, "other": {}}


# -- values checked at load (regressions) ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("tcp://not a host:7355", "'not a host' is not a host name or address"),
        ("tcp://127.0.0.1", "a tcp url needs host and port"),
        ("tcp://127.0.0.1:70000", "port must be in 1..65534"),
        ("udp://127.0.0.1:7355", "unknown transport 'udp'"),
        ("127.0.0.1:7355", "expected tcp://host:port"),
    ],
)
def test_a_bad_bus_url_fails_at_load_naming_the_key_and_the_forms(
    tmp_path: Path, url: str, fault: str
) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(f'[bus]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    message = str(caught.value)
    assert message.startswith(f"{file}: [bus] url: ") and fault in message


@pytest.mark.parametrize("url", ["tcp://bus.internal:7355", "tcp://[::1]:7355", "ipc:///tmp/x"])
def test_good_bus_urls_load(url: str) -> None:
    assert parse_config({"bus": {"url": url}}).bus.url == url


@pytest.mark.parametrize("url", ["nats://nats.internal:4222", "tls://127.0.0.1:4222"])
def test_a_nats_url_loads_and_means_the_nats_backend(url: str) -> None:
    from loom_kernel.bus.connect import uses_nats

    settings = parse_config({"bus": {"url": url}}).bus
    assert settings.url == url and uses_nats(settings)


@pytest.mark.parametrize(
    ("bus", "fault"),
    [
        ('backend = "nats"\nsecurity = "curve"', "on NATS use its own security"),
        ('servers = ["http://127.0.0.1:4222"]', "expected nats://host:port or tls://host:port"),
        ("servers = []", "name at least one NATS server"),
        ('stream = "LOOM.events"', "letters, digits, _ and - only"),
        ("stream_replicas = 7", "stream_replicas"),
        ('backend = "kafka"', "backend"),
    ],
)
def test_bad_nats_settings_fail_at_load_with_the_fix(tmp_path: Path, bus: str, fault: str) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(f"[bus]\n{bus}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert fault in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runtime]\nstall_after = true\n", "[runtime] stall_after = true: a number is expected"),
        ("[bus]\nhwm = true\n", "[bus] hwm = true: a whole number is expected here, not a boolean"),
        ('[bus]\nhwm = "5000"\n', "[bus] hwm = '5000': a whole number is expected here"),
        ("[tracing]\nenabled = 1\n", "[tracing] enabled = 1: true or false is expected"),
        ("[runtime]\nmax_hops = 2.5\n", "[runtime] max_hops = 2.5: a whole number is expected"),
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "loom.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert message in str(caught.value)


def test_an_int_still_counts_as_a_float() -> None:
    assert parse_config({"runtime": {"stall_after": 3}}).runtime.stall_after == 3.0


def test_a_misspelt_llm_key_is_reported_before_the_missing_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"llm": {"x": {"modell": "openai/gpt-4o-mini"}}})
    assert "[llm.x] unknown key 'modell' (did you mean 'model'?)" in str(caught.value)
