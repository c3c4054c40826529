"""`loom deploy`: the image, Compose and Kubernetes files generated from loom.toml, read back
as their tools read them (PyYAML, tomllib, `kubectl kustomize`, the `loom` CLI itself)."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: installed with bokeh and litellm
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from loom_kernel import open_runtime
from loom_kernel.bus.connect import uses_nats
from loom_kernel.bus.nats.server import LocalCluster, nats_server_binary
from loom_kernel.cli.app import app
from loom_kernel.config import LoomConfig, load_config, parse_config
from loom_kernel.errors import BusError, ConfigError, LoomError
from loom_kernel.ops.deploy import (
    DeployOptions,
    is_pristine,
    plan_deployment,
    render,
    to_toml,
    to_yaml,
)
from tests.conftest import PYTHON, free_port, python_env
from tests.support.nats import nats_server

__all__ = ["nats_server"]  # a fixture

PROJECT_TOML = """\
[runtime]
heartbeat_interval = 0.5

[llm.deepseek]
model = "deepseek/deepseek-chat"
api_key_env = "DEEPSEEK_API_KEY"
temperature = 0.2

[llm.local]
model = "openai/qwen"
api_base = "http://llm.internal:8000/v1"
api_key_env = "LOCAL_LLM_KEY"

[router]
models = ["deepseek", "local"]

[mcp.search]
url = "https://search.example.com/mcp"
headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }

[mcp.time]
command = "python"
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]
env = { TIME_KEY = "${TIME_API_KEY}", MODE = "utc" }

[mcp.archive]
command = "python"
args = ["-m", "archive_server"]
env = { TOKEN = "${ARCHIVE_TOKEN}" }
enabled = false

[agents.data]
module = "agents.data:DataAgent"
group = "ingest"
restart = "always"

[agents.news]
module = "agents.news:NewsAgent"
group = "ingest"

[agents.planner]
module = "agents.planner:Planner"
restart = "never"

[agents.planner.settings]
window = 20
symbols = ["BTC", "ETH"]
started = 2024-05-01T09:30:00

[agents.Risk_Check]
module = "agents.risk:RiskAgent"

[agents.legacy]
module = "agents.legacy:Legacy"
enabled = false

[memory]
short_term_size = 50

[tracing]
otlp_endpoint = "http://otel-collector.observability:4318"
sample_ratio = 0.5
"""

SECRETS = ("DEEPSEEK_API_KEY", "LOCAL_LLM_KEY", "SEARCH_TOKEN", "TIME_API_KEY")
GROUPS = {"ingest": "ingest", "planner": "planner", "risk-check": "Risk_Check"}


def config_of(text: str, project: Path | None = None) -> LoomConfig:
    return parse_config(tomllib.loads(text), path=(project or Path("/srv/shop")) / "loom.toml")


def generate(text: str = PROJECT_TOML, **options: Any) -> dict[str, str]:
    defaults = {"project": "shop", "image": "registry.example.com/shop:1.2"}
    return render(config_of(text), DeployOptions(**{**defaults, **options}))


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def manifests(files: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object kubectl would apply (the kustomization's resources)."""
    listed = yaml.safe_load(files["k8s/kustomization.yaml"])["resources"]
    return [doc for name in listed for doc in documents(files[f"k8s/{name}"])]


def of_kind(files: dict[str, str], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests(files) if m["kind"] == kind}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


# -- the plan ----------------------------------------------------------------------------


def test_grouped_agents_share_a_process_and_ungrouped_agents_get_their_own() -> None:
    plan = plan_deployment(config_of(PROJECT_TOML))
    assert {group.service: group.name for group in plan.groups} == GROUPS
    assert {group.name: group.agents for group in plan.groups} == {
        "ingest": ("data", "news"),
        "planner": ("planner",),
        "Risk_Check": ("Risk_Check",),
    }


def test_a_group_restarts_as_its_most_persistent_agent() -> None:
    restarts = {g.name: g.restart for g in plan_deployment(config_of(PROJECT_TOML)).groups}
    assert restarts == {"ingest": "always", "planner": "never", "Risk_Check": "on-failure"}


def test_secrets_are_the_variables_llm_and_enabled_mcp_entries_name() -> None:
    # [mcp.archive] is disabled: its ${ARCHIVE_TOKEN} is not needed
    assert plan_deployment(config_of(PROJECT_TOML)).secrets == SECRETS


def test_a_project_without_agents_has_nothing_to_deploy() -> None:
    with pytest.raises(ConfigError, match="nothing to deploy: declare agents with `loom create"):
        plan_deployment(config_of('[llm.a]\nmodel = "openai/x"\n'))
    with pytest.raises(ConfigError, match=r"every \[agents\.\*\] has enabled = false"):
        plan_deployment(config_of('[agents.a]\nmodule = "a:A"\nenabled = false\n'))


def test_an_agent_without_module_is_refused_with_the_line_to_add() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_deployment(config_of('[agents.trend]\ngroup = "analysis"\n'))
    message = str(caught.value)
    assert message.startswith("/srv/shop/loom.toml: [agents.trend] has no module")
    assert 'add `module = "agents.trend:Agent"`' in message


def test_a_module_that_is_not_module_colon_class_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape('write it as "package.module:Class"')):
        plan_deployment(config_of('[agents.trend]\nmodule = "agents/trend.py"\n'))


def test_a_key_written_in_loom_toml_is_refused() -> None:
    text = (
        '[llm.openai]\nmodel = "openai/gpt-4o"\napi_key = "sk-live"\n[agents.a]\nmodule = "a:A"\n'
    )
    with pytest.raises(ConfigError, match='api_key_env = "OPENAI_API_KEY"'):
        plan_deployment(config_of(text))


def test_group_names_that_clash_as_service_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="group 'Bus' would be named 'bus'"):
        plan_deployment(config_of('[agents.a]\nmodule = "a:A"\ngroup = "Bus"\n'))
    clash = (
        '[agents.a]\nmodule = "a:A"\ngroup = "risk_check"\n[agents.risk-check]\nmodule = "b:B"\n'
    )
    with pytest.raises(ConfigError, match="'risk_check' and 'risk-check' would both be named"):
        plan_deployment(config_of(clash))


def test_endpoints_on_localhost_are_warned_about() -> None:
    text = PROJECT_TOML.replace("otel-collector.observability", "localhost").replace(
        "llm.internal", "127.0.0.1"
    )
    warnings = "\n".join(plan_deployment(config_of(text)).warnings)
    assert "[tracing] otlp_endpoint" in warnings
    assert "[llm.local] api_base" in warnings
    assert not plan_deployment(config_of(PROJECT_TOML)).warnings


# -- every file --------------------------------------------------------------------------


def test_the_deployment_is_these_files() -> None:
    assert sorted(generate()) == [
        ".env.example",
        "Dockerfile",
        "Dockerfile.dockerignore",
        "compose.yaml",
        "k8s/agents-ingest.yaml",
        "k8s/agents-planner.yaml",
        "k8s/agents-risk-check.yaml",
        "k8s/bus.yaml",
        "k8s/configmap.yaml",
        "k8s/kustomization.yaml",
        "k8s/namespace.yaml",
        "k8s/networkpolicy.yaml",
        "k8s/secrets.example.yaml",
        "k8s/studio.yaml",
        "k8s/volume.yaml",
        "loom.deploy.toml",
    ]


def test_every_yaml_file_parses_and_every_file_is_stamped() -> None:
    files = generate()
    for path, text in files.items():
        assert is_pristine(text), path
        if path.endswith(".yaml"):
            assert documents(text), path


def test_no_file_holds_a_key_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.setenv(name, f"secret-value-of-{name}")
    for path, text in generate().items():
        assert "secret-value-of" not in text, path


def test_projects_without_keys_get_no_secret_files() -> None:
    files = generate('[agents.echo]\nmodule = "agents.echo:Echo"\n')
    assert ".env.example" not in files and "k8s/secrets.example.yaml" not in files
    echo = of_kind(files, "Deployment")["echo"]
    assert [e["name"] for e in echo["spec"]["template"]["spec"]["containers"][0]["env"]] == [
        "LOOM_CONFIG"
    ]


# -- Compose -----------------------------------------------------------------------------


def test_compose_runs_the_bus_each_group_and_the_studio() -> None:
    compose = yaml.safe_load(generate()["compose.yaml"])
    services = compose["services"]
    assert compose["name"] == "shop"
    assert list(services) == ["bus", "ingest", "planner", "risk-check", "studio"]
    bus = services["bus"]
    assert bus["command"] == ["bus", "--url", "tcp://0.0.0.0:7355"]
    assert bus["ports"] == ["127.0.0.1:7355-7356:7355-7356"]
    assert bus["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert "7355, 7356" in bus["healthcheck"]["test"][3]
    for service, group in GROUPS.items():
        assert services[service]["command"] == ["run", "--group", group]
        assert services[service]["depends_on"] == {"bus": {"condition": "service_healthy"}}
        assert "ports" not in services[service]
    studio = services["studio"]
    assert studio["command"] == ["studio", "--address", "0.0.0.0", "--port", "5006"]
    assert studio["ports"] == ["127.0.0.1:5006:5006"]
    assert studio["depends_on"] == {"bus": {"condition": "service_healthy"}}
    for service in services.values():
        assert service["image"] == "registry.example.com/shop:1.2"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert service["environment"]["LOOM_CONFIG"] == "/app/loom.deploy.toml"
        assert service["volumes"] == [
            "./loom.deploy.toml:/app/loom.deploy.toml:ro",
            "loom-data:/var/lib/loom",
        ]
    assert compose["volumes"] == {"loom-data": {}}


def test_compose_restart_policies_follow_the_agents() -> None:
    services = yaml.safe_load(generate()["compose.yaml"])["services"]
    restart = {name: service["restart"] for name, service in services.items()}
    assert restart == {
        "bus": "unless-stopped",
        "ingest": "always",
        "planner": "no",
        "risk-check": "on-failure",
        "studio": "unless-stopped",
    }


def test_compose_passes_keys_by_reference_to_the_agents_only() -> None:
    files = generate()
    services = yaml.safe_load(files["compose.yaml"])["services"]
    for service in GROUPS:
        environment = services[service]["environment"]
        assert {k: v for k, v in environment.items() if k != "LOOM_CONFIG"} == {
            name: f"${{{name}}}" for name in SECRETS
        }
    assert set(services["bus"]["environment"]) == {"LOOM_CONFIG"}
    assert set(services["studio"]["environment"]) == {"LOOM_CONFIG"}
    assert files[".env.example"].splitlines()[-4:] == [f"{name}=" for name in SECRETS]


def test_the_bus_gets_a_fresh_discovery_folder_on_each_start() -> None:
    bus = yaml.safe_load(generate()["compose.yaml"])["services"]["bus"]
    assert bus["tmpfs"] == ["/app/.loom:mode=1777"]


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no `docker compose` here",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    for path, text in generate().items():
        (tmp_path / "deploy" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "deploy" / path).write_text(text)
    result = subprocess.run(
        ["docker", "compose", "-f", "deploy/compose.yaml", "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


# -- the deployment's loom.toml ----------------------------------------------------------


def test_the_deploy_config_joins_the_bus_service_and_keeps_the_project_settings() -> None:
    text = generate()["loom.deploy.toml"]
    deployed = parse_config(tomllib.loads(text))
    original = config_of(PROJECT_TOML)
    assert deployed.bus.url == "tcp://bus:7355"
    assert deployed.bus.mode == "connect"
    assert deployed.memory.path == "/var/lib/loom/memory.db"
    assert deployed.memory.short_term_size == 50
    assert deployed.tracing.store_path == "/var/lib/loom/traces.db"
    assert deployed.tracing.otlp_endpoint == "http://otel-collector.observability:4318"
    assert deployed.tracing.sample_ratio == 0.5
    for section in ("runtime", "llm", "router", "mcp", "agents"):
        assert getattr(deployed, section) == getattr(original, section), section
    assert deployed.agents["planner"].settings["started"] == datetime.datetime(2024, 5, 1, 9, 30)
    assert 'Authorization = "Bearer ${SEARCH_TOKEN}"' in text  # a reference, expanded at run
    assert '[bus] security = "none": whoever reaches ports' in text


def test_a_curve_bus_gets_its_keys_from_a_mount_never_from_the_image() -> None:
    secured = '[bus]\nsecurity = "curve"\n' + PROJECT_TOML
    files = generate(secured, context="..")
    deployed = parse_config(tomllib.loads(files["loom.deploy.toml"]))
    assert (deployed.bus.security, deployed.bus.keys) == ("curve", "/run/loom-keys")
    assert "only a process holding a key pair the broker admits" in files["loom.deploy.toml"]
    assert ".loom" in files["Dockerfile.dockerignore"].splitlines()  # the default keys folder
    # Compose: every service mounts the project's keys folder read-only
    services = yaml.safe_load(files["compose.yaml"])["services"]
    for name, service in services.items():
        assert "../.loom/keys:/run/loom-keys:ro" in service["volumes"], name
    assert "chgrp -R 10001 ../.loom/keys" in files["compose.yaml"]
    # Kubernetes: every pod mounts the Secret, readable by its group only; how to create it
    for name, deployment in of_kind(files, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "bus-keys"]
        assert volume["secret"] == {"secretName": "shop-bus-keys", "defaultMode": 0o440}, name
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "bus-keys"]
        assert mount == {"name": "bus-keys", "mountPath": "/run/loom-keys", "readOnly": True}
    assert (
        "kubectl create secret generic shop-bus-keys --namespace" in files["k8s/kustomization.yaml"]
    )
    assert all("secretName" not in text or "bus-keys" in text for text in files.values())


def test_acls_and_tenants_go_into_the_deployments_settings() -> None:
    secured = (
        '[bus]\nsecurity = "curve"\noperators = ["ops"]\n'
        '[acl.analyst]\npublish = ["analysis.*"]\ntools = ["quote"]\n'
        '[tenants.acme]\nidentities = ["acme-1"]\n' + PROJECT_TOML
    )
    files = generate(secured, context="..")
    deployed = parse_config(tomllib.loads(files["loom.deploy.toml"]))
    assert deployed.bus.operators == ["ops"]
    assert deployed.acl["analyst"].publish == ["analysis.*"]
    assert deployed.acl["analyst"].tools == ["quote"]
    assert deployed.tenants["acme"].identities == ["acme-1"]


def test_a_plain_bus_mounts_no_keys() -> None:
    files = generate()
    assert "/run/loom-keys" not in files["compose.yaml"] + "".join(
        text for name, text in files.items() if name.startswith("k8s/")
    )


def test_keys_in_a_project_folder_stay_out_of_the_image() -> None:
    secured = '[bus]\nsecurity = "curve"\nkeys = "secrets/bus"\n' + PROJECT_TOML
    assert "secrets/bus" in generate(secured)["Dockerfile.dockerignore"].splitlines()


# -- Kubernetes --------------------------------------------------------------------------


def test_every_manifest_is_named_labelled_and_in_the_namespace() -> None:
    found = manifests(generate(namespace="trading"))
    assert {m["kind"] for m in found} == {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "NetworkPolicy",
        "Deployment",
        "Service",
    }
    for manifest in found:
        assert manifest["apiVersion"] and manifest["metadata"]["name"], manifest
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "shop"
        assert labels["app.kubernetes.io/name"]
        if manifest["kind"] == "Namespace":
            assert manifest["metadata"]["name"] == "trading"
        else:
            assert manifest["metadata"]["namespace"] == "trading"


def test_deployments_select_their_own_pods_and_services_select_deployments() -> None:
    files = generate()
    deployments = of_kind(files, "Deployment")
    assert set(deployments) == {"bus", "studio", *GROUPS}
    pods = {}
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        pods[name] = labels
        others = [other for other in deployments if other != name]
        assert not any(selector.items() <= pods.get(o, {}).items() for o in others), name
    services = of_kind(files, "Service")
    assert set(services) == {"bus", "studio"}
    for name, service in services.items():
        chosen = [
            d for d, labels in pods.items() if service["spec"]["selector"].items() <= labels.items()
        ]
        assert chosen == [name]
    assert [(p["name"], p["port"]) for p in services["bus"]["spec"]["ports"]] == [
        ("publish", 7355),
        ("subscribe", 7356),
    ]
    assert services["studio"]["spec"]["ports"][0]["port"] == 5006


def test_containers_run_the_groups_with_keys_from_the_secret() -> None:
    deployments = of_kind(generate(), "Deployment")
    args = {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in deployments.items()
    }
    assert args["bus"] == ["bus", "--url", "tcp://0.0.0.0:7355"]
    assert args["studio"] == ["studio", "--address", "0.0.0.0", "--port", "5006"]
    for service, group in GROUPS.items():
        assert args[service] == ["run", "--group", group]
        pod = deployments[service]["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["LOOM_CONFIG"]["value"] == "/app/loom.deploy.toml"
        for name in SECRETS:
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": "shop-secrets",
                "key": name,
                "optional": True,
            }
        assert pod["initContainers"][0]["name"] == "wait-for-bus"
        affinity = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert (
            affinity[0]["labelSelector"]["matchLabels"]
            == deployments["bus"]["spec"]["selector"]["matchLabels"]
        )
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["image"] == "registry.example.com/shop:1.2"
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/app/loom.deploy.toml"]["subPath"] == "loom.toml"
        assert {v["name"] for v in pod["volumes"]} == {"config", "data"}


def test_the_configmap_holds_the_deploy_config_and_pods_roll_when_it_changes() -> None:
    files = generate()
    config_map = of_kind(files, "ConfigMap")["shop-config"]
    assert config_map["data"]["loom.toml"] == files["loom.deploy.toml"]
    checksum = of_kind(files, "Deployment")["bus"]["spec"]["template"]["metadata"]["annotations"]
    changed = of_kind(generate(PROJECT_TOML.replace("window = 20", "window = 50")), "Deployment")
    assert changed["bus"]["spec"]["template"]["metadata"]["annotations"] != checksum


def test_the_kustomization_applies_everything_but_the_secret_example() -> None:
    files = generate()
    listed = yaml.safe_load(files["k8s/kustomization.yaml"])["resources"]
    on_disk = {path.removeprefix("k8s/") for path in files if path.startswith("k8s/")}
    assert set(listed) == on_disk - {"kustomization.yaml", "secrets.example.yaml"}


def test_the_secret_example_lists_the_keys_without_values() -> None:
    text = generate()["k8s/secrets.example.yaml"]
    (secret,) = documents(text)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "shop-secrets"
    assert secret["stringData"] == {name: "" for name in SECRETS}
    assert "kubectl create secret generic shop-secrets --namespace shop" in text


def test_the_network_policy_admits_only_the_projects_pods() -> None:
    (policy,) = of_kind(generate(), "NetworkPolicy").values()
    ours = {"matchLabels": {"app.kubernetes.io/part-of": "shop"}}
    assert policy["spec"]["podSelector"] == ours
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": ours}]}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
@pytest.mark.parametrize("security", ["none", "curve"])
def test_kubectl_kustomize_builds_the_manifests(tmp_path: Path, security: str) -> None:
    # group names a YAML 1.1 reader would take for booleans or null must stay strings
    bus = f'[bus]\nsecurity = "{security}"\n'
    text = (
        bus
        + PROJECT_TOML.replace('group = "ingest"', 'group = "on"')
        + ('[agents.y]\nmodule = "agents.y:Y"\n[agents.z]\nmodule = "agents.z:Z"\ngroup = "null"\n')
    )
    for path, content in generate(text).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    names = {(m["kind"], m["metadata"]["name"]) for m in built}
    assert {("Deployment", "on"), ("Deployment", "y"), ("Deployment", "null")} <= names
    assert len(built) == len(manifests(generate(text)))


# -- NATS --------------------------------------------------------------------------------

NATS_TOML = '[bus]\nbackend = "nats"\n' + PROJECT_TOML
EXTERNAL = ("nats://nats-a.internal:4222", "tls://nats-b.internal:4222")


def loom_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image (every one but NATS's)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def test_a_nats_project_runs_a_nats_service_instead_of_the_broker() -> None:
    files = generate(NATS_TOML)
    compose = yaml.safe_load(files["compose.yaml"])
    services = compose["services"]
    assert list(services) == ["nats", "ingest", "planner", "risk-check", "studio"]
    nats = services["nats"]
    assert nats["image"] == "nats:2.11-alpine"
    assert nats["command"] == ["-js", "-sd", "/data", "-m", "8222"]
    assert nats["volumes"] == ["nats-data:/data"]
    assert nats["ports"] == ["127.0.0.1:4222:4222"]
    assert nats["healthcheck"]["test"][-1] == "http://127.0.0.1:8222/healthz"
    assert compose["volumes"] == {"loom-data": {}, "nats-data": {}}
    for name, service in loom_services(compose).items():
        assert service["depends_on"] == {"nats": {"condition": "service_healthy"}}, name
        assert service["environment"]["LOOM_CONFIG"] == "/app/loom.deploy.toml"
    # the groups read loom.deploy.toml, the studio its own copy, at the same path
    assert services["ingest"]["volumes"][0] == "./loom.deploy.toml:/app/loom.deploy.toml:ro"
    assert services["studio"]["volumes"][0] == "./loom.studio.toml:/app/loom.deploy.toml:ro"
    assert "EXPOSE 5006\n" in files["Dockerfile"] and "7355" not in files["Dockerfile"]
    assert "whoever reaches port 4222" in files["compose.yaml"]


def test_every_process_of_a_nats_project_joins_the_nats_service() -> None:
    files = generate(NATS_TOML.replace('backend = "nats"', 'url = "nats://127.0.0.1:4222"'))
    deployed = parse_config(tomllib.loads(files["loom.deploy.toml"]))
    studio = parse_config(tomllib.loads(files["loom.studio.toml"]))
    for copy in (deployed, studio):
        assert copy.bus.url is None  # a URL would win over the servers
        assert (copy.bus.backend, copy.bus.servers) == ("nats", ["nats://nats:4222"])
        assert uses_nats(copy.bus)
        assert copy.tracing.store_path == "/var/lib/loom/traces.db"
    # the studio alone stores the spans (it takes the host lock); the groups only join
    assert (deployed.bus.mode, studio.bus.mode) == ("connect", "auto")
    assert deployed.agents == studio.agents == config_of(PROJECT_TOML).agents
    assert "tcp://bus:7355" not in "".join(files.values())


def test_a_nats_project_gets_a_nats_statefulset_on_kubernetes() -> None:
    files = generate(NATS_TOML, namespace="trading")
    assert "k8s/bus.yaml" not in files
    assert set(of_kind(files, "Deployment")) == {"studio", *GROUPS}
    assert set(of_kind(files, "Service")) == {"nats", "nats-headless", "studio"}
    (nats,) = of_kind(files, "StatefulSet").values()
    spec = nats["spec"]
    assert (nats["metadata"]["name"], spec["replicas"]) == ("nats", 3)
    assert spec["serviceName"] == "nats-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "nats:2.11-alpine"
    assert container["args"] == ["--config", "/etc/nats/nats.conf"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/nats", "/data"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    [config] = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    conf = of_kind(files, "ConfigMap")[config]["data"]["nats.conf"]
    for index in range(3):
        assert f"nats://nats-{index}.nats-headless.trading.svc:6222" in conf
    assert "jetstream {\n  store_dir: /data\n}" in conf
    assert "server_name: $SERVER_NAME" in conf
    # the Services select the StatefulSet's pods; the headless one for the routes
    services = of_kind(files, "Service")
    labels = spec["template"]["metadata"]["labels"]
    for name in ("nats", "nats-headless"):
        assert services[name]["spec"]["selector"].items() <= labels.items(), name
    assert [p["port"] for p in services["nats"]["spec"]["ports"]] == [4222]
    headless = services["nats-headless"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert [p["port"] for p in headless["ports"]] == [4222, 6222, 8222]


def test_on_nats_the_pods_wait_for_nats_and_gather_on_the_studios_node() -> None:
    files = generate(NATS_TOML)
    deployments = of_kind(files, "Deployment")
    studio = deployments["studio"]["spec"]["template"]["spec"]
    assert "affinity" not in studio
    [mount] = [m for m in studio["containers"][0]["volumeMounts"] if m["name"] == "config"]
    assert mount["subPath"] == "loom.studio.toml"
    config_map = of_kind(files, "ConfigMap")["shop-config"]["data"]
    assert config_map == {
        "loom.toml": files["loom.deploy.toml"],
        "loom.studio.toml": files["loom.studio.toml"],
    }
    for name in GROUPS:
        pod = deployments[name]["spec"]["template"]["spec"]
        affinity = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        selector = deployments["studio"]["spec"]["selector"]["matchLabels"]
        assert affinity[0]["labelSelector"]["matchLabels"] == selector
    for name, deployment in deployments.items():
        [init] = deployment["spec"]["template"]["spec"]["initContainers"]
        assert "('nats', 4222)" in init["command"][-1], name


def test_nats_url_names_an_external_cluster_and_generates_no_nats() -> None:
    files = generate(NATS_TOML, nats_urls=EXTERNAL)
    compose = yaml.safe_load(files["compose.yaml"])
    assert list(compose["services"]) == ["ingest", "planner", "risk-check", "studio"]
    assert compose["volumes"] == {"loom-data": {}}
    assert all("depends_on" not in s for s in compose["services"].values())
    assert "k8s/nats.yaml" not in files
    assert {m["kind"] for m in manifests(files)} == {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "NetworkPolicy",
        "Deployment",
        "Service",
    }
    assert set(of_kind(files, "Service")) == {"studio"}
    for deployment in of_kind(files, "Deployment").values():
        assert "initContainers" not in deployment["spec"]["template"]["spec"]
    for name in ("loom.deploy.toml", "loom.studio.toml"):
        deployed = parse_config(tomllib.loads(files[name]))
        assert deployed.bus.servers == list(EXTERNAL), name
    assert "nats://nats:4222" not in "".join(files.values())
    assert "a NATS cluster outside this deployment" in files["loom.deploy.toml"]


def test_servers_on_another_host_are_an_external_cluster() -> None:
    servers = (
        '[bus]\nbackend = "nats"\nservers = ["nats://10.0.0.5:4222", "nats://localhost:4222"]\n'
    )
    plan = plan_deployment(config_of(servers + PROJECT_TOML))
    assert plan.nats is not None and plan.nats.external
    assert plan.nats.servers == ("nats://10.0.0.5:4222", "nats://localhost:4222")  # kept
    assert plan.warnings == ("[bus] servers: 'nats://localhost:4222' is localhost in a container",)
    files = generate(servers + PROJECT_TOML)
    assert "nats" not in yaml.safe_load(files["compose.yaml"])["services"]
    assert "k8s/nats.yaml" not in files
    url = plan_deployment(config_of('[bus]\nurl = "tls://nats.internal:4222"\n' + PROJECT_TOML))
    assert url.nats is not None and url.nats.servers == ("tls://nats.internal:4222",)
    local = plan_deployment(config_of(NATS_TOML))
    assert local.nats is not None and not local.nats.external
    assert local.nats.servers == ("nats://nats:4222",)


def test_stream_replicas_beyond_the_statefulsets_servers_are_warned_about() -> None:
    def warnings(replicas: int, urls: tuple[str, ...] = ()) -> str:
        bus = f'[bus]\nbackend = "nats"\nstream_replicas = {replicas}\n'
        text = bus + "[eventlog]\nenabled = true\n" + PROJECT_TOML
        return "\n".join(plan_deployment(config_of(text), urls).warnings)

    assert "runs 3 servers, so JetStream cannot keep 5 copies of stream 'LOOM'" in warnings(5)
    assert "k8s/nats.yaml" not in warnings(3)
    assert "compose.yaml runs one NATS server" in warnings(3)  # Compose runs one
    assert warnings(1) == ""
    assert warnings(5, EXTERNAL) == ""  # a cluster of its own size


def test_nats_files_and_password_are_mounted_never_in_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_NATS_PASSWORD", "secret-value-of-the-password")
    bus = (
        '[bus]\nbackend = "nats"\nuser = "loom"\ncredentials = "secrets/loom.creds"\n'
        'tls_ca = "certs/ca.pem"\ntls_cert = "/etc/pki/loom.pem"\n'
    )
    files = generate(bus + PROJECT_TOML, nats_urls=EXTERNAL)
    assert all("secret-value-of" not in text for text in files.values())
    ignored = files["Dockerfile.dockerignore"].splitlines()
    assert "secrets/loom.creds" in ignored and "certs/ca.pem" in ignored
    deployed = parse_config(tomllib.loads(files["loom.deploy.toml"]))
    assert deployed.bus.credentials == "/run/loom-nats/nats.creds"
    assert deployed.bus.tls_ca == "/run/loom-nats/ca.pem"
    assert deployed.bus.tls_cert == "/run/loom-nats/cert.pem"
    # Compose: read-only mounts of the project's files; the password by reference
    compose = yaml.safe_load(files["compose.yaml"])
    for name, service in loom_services(compose).items():
        assert "../secrets/loom.creds:/run/loom-nats/nats.creds:ro" in service["volumes"], name
        assert "/etc/pki/loom.pem:/run/loom-nats/cert.pem:ro" in service["volumes"], name
        assert service["environment"]["LOOM_NATS_PASSWORD"] == "${LOOM_NATS_PASSWORD}", name
    assert "LOOM_NATS_PASSWORD=" in files[".env.example"].splitlines()
    # Kubernetes: a Secret the operator creates, mounted read-only in every pod
    for name, deployment in of_kind(files, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "nats-files"]
        assert volume["secret"] == {"secretName": "shop-nats", "defaultMode": 0o440}, name
        container = pod["containers"][0]
        assert {"name": "nats-files", "mountPath": "/run/loom-nats", "readOnly": True} in (
            container["volumeMounts"]
        )
        env = {e["name"]: e for e in container["env"]}
        assert env["LOOM_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "shop-secrets"
    help_text = files["k8s/kustomization.yaml"]
    assert "kubectl create secret generic shop-nats --namespace shop" in help_text
    assert "--from-file=nats.creds=secrets/loom.creds" in help_text
    (secret,) = documents(files["k8s/secrets.example.yaml"])
    assert "LOOM_NATS_PASSWORD" in secret["stringData"]


def test_an_external_cluster_without_credentials_may_take_a_token() -> None:
    plan = plan_deployment(config_of(NATS_TOML), EXTERNAL)
    assert plan.nats is not None and plan.nats.secrets == ("LOOM_NATS_TOKEN",)
    own = plan_deployment(config_of(NATS_TOML)).nats  # its own server: no authentication
    assert own is not None and own.secrets == ()
    files = generate(NATS_TOML, nats_urls=EXTERNAL)
    studio = yaml.safe_load(files["compose.yaml"])["services"]["studio"]
    assert studio["environment"]["LOOM_NATS_TOKEN"] == "${LOOM_NATS_TOKEN}"


def test_nats_urls_are_checked_and_refused_for_a_zeromq_project() -> None:
    with pytest.raises(ConfigError, match=r"--nats-url is for a project on NATS"):
        plan_deployment(config_of(PROJECT_TOML), EXTERNAL)
    with pytest.raises(ConfigError, match="is not a NATS server"):
        plan_deployment(config_of(NATS_TOML), ("http://nats:4222",))
    with pytest.raises(ConfigError, match="holds a user or password"):
        plan_deployment(config_of(NATS_TOML), ("nats://loom:pw@nats:4222",))


def test_a_group_named_nats_is_refused_when_the_deployment_runs_nats() -> None:
    text = '[agents.a]\nmodule = "a:A"\ngroup = "NATS"\n'
    with pytest.raises(ConfigError, match="group 'NATS' would be named 'nats'"):
        plan_deployment(config_of('[bus]\nbackend = "nats"\n' + text))
    assert plan_deployment(config_of(text)).groups[0].service == "nats"  # ZeroMQ: no clash
    assert plan_deployment(config_of('[bus]\nbackend = "nats"\n' + text), EXTERNAL).groups


def test_a_zeromq_project_names_no_nats() -> None:
    files = generate()
    assert not any("nats" in text.lower() for text in files.values())
    assert "loom.studio.toml" not in files


def _nats_binary() -> str | None:
    try:
        return nats_server_binary()
    except BusError:
        return None


@pytest.mark.skipif(_nats_binary() is None, reason="no nats-server here")
def test_nats_server_accepts_the_generated_configuration(tmp_path: Path) -> None:
    files = generate(NATS_TOML)
    conf = tmp_path / "nats.conf"
    conf.write_text(documents(files["k8s/nats.yaml"])[0]["data"]["nats.conf"])
    binary = str(_nats_binary())
    checked = subprocess.run(
        [binary, "-t", "-c", str(conf)],
        env={"SERVER_NAME": "nats-0"},  # as the StatefulSet sets it, from the pod's name
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    # the Compose service's flags, and the monitor its health check asks
    command = yaml.safe_load(files["compose.yaml"])["services"]["nats"]["command"]
    port, monitor = free_port(), free_port()
    command = [binary, *command, "-p", str(port)]
    command = [str(monitor) if arg == "8222" else arg for arg in command]
    command = [str(tmp_path / "data") if arg == "/data" else arg for arg in command]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "nats-server never answered /healthz"
                time.sleep(0.1)
        assert (tmp_path / "data" / "jetstream").is_dir()  # -sd: JetStream's store
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
@pytest.mark.parametrize("urls", [(), EXTERNAL])
def test_kubectl_kustomize_builds_the_nats_manifests(tmp_path: Path, urls: tuple[str, ...]) -> None:
    files = generate(
        NATS_TOML.replace("[bus]\n", '[bus]\ncredentials = "x.creds"\n'), nats_urls=urls
    )
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = {(m["kind"], m["metadata"]["name"]) for m in built}
    assert (("StatefulSet", "nats") in kinds) is (not urls)
    assert len(built) == len(manifests(files))


# -- the image ---------------------------------------------------------------------------


def test_the_dockerfile_installs_loom_and_runs_as_a_user_without_privileges() -> None:
    steps = dockerfile_instructions(generate(loom_spec="loom-studio==0.1.0")["Dockerfile"])
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("ARG", 'LOOM_SPEC="loom-studio==0.1.0"') in steps
    assert ("RUN", 'pip install "${LOOM_SPEC}"') in steps
    users = [arguments for kind, arguments in steps if kind == "USER"]
    assert users == ["10001:10001"]
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["loom"]
    assert ("COPY", "--chown=10001:10001 . /app") in steps
    assert not any("requirements" in arguments for _, arguments in steps)


def test_the_projects_requirements_are_installed_when_it_has_them() -> None:
    steps = dockerfile_instructions(generate(requirements=True)["Dockerfile"])
    assert ("COPY", "requirements.txt /tmp/requirements.txt") in steps
    requirements = steps.index(("RUN", "pip install -r /tmp/requirements.txt"))
    assert requirements < steps.index(("COPY", "--chown=10001:10001 . /app"))  # cached layer


def test_the_image_leaves_local_state_and_the_deploy_folder_out() -> None:
    ignored = generate(ignore=("ops/deploy",))["Dockerfile.dockerignore"].splitlines()
    for pattern in (".loom", ".venv", "**/__pycache__", ".env", "ops/deploy"):
        assert pattern in ignored


# -- the text formats ----------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.text().map(lambda s: s + "\n")
    | st.sampled_from(["y", "on", "No", "null", "~", "1e3", "0o17", "1:20", "- x", "a: b", "#"])
)
_yaml_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)  # parsing time varies with the machine's load, not with the emitter
@given(_yaml_values)
@example("A\n")  # a plain-looking word with a newline: `$` matches before it
@example({"key\n": ["x\n", "multi\nline\n", " lead\n", {"k": "v\n"}], "on": "off"})
def test_yaml_reads_back_as_written(value: Any) -> None:
    assert yaml.safe_load(to_yaml(value)) == value


_toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.datetimes()
    | st.dates()
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=10), _toml_values, max_size=5))
@example({"a\n": {"b c": [{"d": 1}], "": {}}, "x": float("inf")})
def test_toml_reads_back_as_written(data: dict[str, Any]) -> None:
    assert tomllib.loads(to_toml(data)) == data


def test_an_edited_file_is_no_longer_pristine() -> None:
    text = generate()["compose.yaml"]
    assert is_pristine(text)
    assert not is_pristine(text.replace("restart: always", "restart: no"))
    assert not is_pristine("services: {}\n")


# -- the command ---------------------------------------------------------------------------

AGENT = """\
from loom_kernel import Agent, on_event


class Echo(Agent):
    @on_event("echo.ask")
    async def answer(self, event, ctx):
        await ctx.memory.add("asked", event.data)
        await ctx.reply(event, {"echo": event.data, "by": self.id})
"""


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder named shop with two agents, the working directory."""
    project = tmp_path / "shop"
    (project / "agents").mkdir(parents=True)
    (project / "agents" / "__init__.py").write_text("")
    (project / "agents" / "echo.py").write_text(AGENT)
    (project / "loom.toml").write_text(
        '[llm.deepseek]\nmodel = "deepseek/deepseek-chat"\napi_key_env = "DEEPSEEK_API_KEY"\n\n'
        '[agents.echo]\nmodule = "agents.echo:Echo"\ngroup = "front"\n'
    )
    monkeypatch.chdir(project)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    return project


def loom_deploy(*args: str) -> Any:
    return CliRunner().invoke(app, ["deploy", *args], env={"COLUMNS": "200"})


def snapshot(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): path.read_text()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_deploy_writes_the_files_and_a_second_run_changes_nothing(shop: Path) -> None:
    result = loom_deploy()
    assert result.exit_code == 0, result.output
    written = snapshot(shop / "deploy")
    assert written == render(load_config(shop / "loom.toml"), _options_for(shop))
    assert "wrote 14 of 14 files" in result.output
    again = loom_deploy()
    assert again.exit_code == 0 and "wrote 0 of 14 files" in again.output
    assert snapshot(shop / "deploy") == written


def _options_for(project: Path) -> DeployOptions:
    from importlib.metadata import version

    return DeployOptions(
        project="shop",
        image="shop:latest",
        loom_spec=f"loom-studio=={version('loom-studio')}",
    )


def test_a_changed_config_replaces_the_files_left_as_generated(shop: Path) -> None:
    assert loom_deploy().exit_code == 0
    with (shop / "loom.toml").open("a") as toml:
        toml.write('\n[agents.audit]\nmodule = "agents.echo:Echo"\n')
    result = loom_deploy()
    assert result.exit_code == 0, result.output
    assert (shop / "deploy" / "k8s" / "agents-audit.yaml").is_file()
    assert "audit:" in (shop / "deploy" / "compose.yaml").read_text()


def test_an_edited_file_is_not_overwritten_without_force(shop: Path) -> None:
    assert loom_deploy().exit_code == 0
    compose = shop / "deploy" / "compose.yaml"
    compose.write_text(compose.read_text() + "# my change\n")
    with (shop / "loom.toml").open("a") as toml:
        toml.write('\n[agents.audit]\nmodule = "agents.echo:Echo"\n')
    result = loom_deploy()
    assert isinstance(result.exception, LoomError)
    assert "compose.yaml in" in str(result.exception)
    assert "pass --force to overwrite them" in str(result.exception)
    assert compose.read_text().endswith("# my change\n")
    assert not (shop / "deploy" / "k8s" / "agents-audit.yaml").exists()  # nothing written

    forced = loom_deploy("--force")
    assert forced.exit_code == 0, forced.output
    assert "# my change" not in compose.read_text()
    assert is_pristine(compose.read_text())


def test_options_name_the_image_namespace_and_folder(shop: Path) -> None:
    result = loom_deploy(
        "--out", "ops/release", "--image", "ghcr.io/acme/shop:2", "--namespace", "shop-prod"
    )
    assert result.exit_code == 0, result.output
    out = shop / "ops" / "release"
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert compose["services"]["front"]["image"] == "ghcr.io/acme/shop:2"
    assert compose["services"]["front"]["build"] == {
        "context": "../..",
        "dockerfile": "ops/release/Dockerfile",
    }
    assert "ops/release" in (out / "Dockerfile.dockerignore").read_text().splitlines()
    namespace = yaml.safe_load((out / "k8s" / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == "shop-prod"
    bad = loom_deploy("--namespace", "Shop_Prod")
    assert bad.exit_code == 2 and "not a Kubernetes namespace" in bad.output


def test_nats_url_option_points_every_process_at_the_cluster(shop: Path) -> None:
    with (shop / "loom.toml").open("a") as toml:
        toml.write('\n[bus]\nbackend = "nats"\n')
    two, three = "nats://n1.internal:4222, nats://n2.internal:4222", "tls://n3.internal:4222"
    result = loom_deploy("--nats-url", two, "--nats-url", three)
    assert result.exit_code == 0, result.output
    deploy = shop / "deploy"
    assert not (deploy / "k8s" / "nats.yaml").exists()
    assert "nats" not in yaml.safe_load((deploy / "compose.yaml").read_text())["services"]
    deployed = load_config(deploy / "loom.deploy.toml")
    assert deployed.bus.servers == [
        "nats://n1.internal:4222",
        "nats://n2.internal:4222",
        "tls://n3.internal:4222",
    ]
    bad = loom_deploy("--nats-url", "n1.internal:4222")
    assert bad.exit_code == 2 and "is not a NATS server" in bad.output


def test_nats_url_on_a_zeromq_project_is_an_error(shop: Path) -> None:
    result = run_loom(shop, "deploy", "--dry-run", "--nats-url", "nats://n1.internal:4222")
    assert result.returncode == 1
    assert "--nats-url is for a project on NATS" in result.stderr


def test_the_commands_in_the_files_are_valid_loom_commands(shop: Path) -> None:
    assert loom_deploy().exit_code == 0
    compose = yaml.safe_load((shop / "deploy" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        # unknown options fail parsing before --help answers
        result = CliRunner().invoke(app, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def run_loom(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**python_env(), "COLUMNS": "200"}
    env.pop("LOOM_CONFIG", None)
    return subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dry_run_lists_the_files_and_writes_nothing(shop: Path) -> None:
    before = snapshot(shop)
    result = run_loom(shop, "deploy", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would write 14 of 14 files" in result.stdout
    assert "k8s/agents-front.yaml" in result.stdout and "dry run: nothing written" in result.stdout
    assert snapshot(shop) == before
    shown = run_loom(shop, "deploy", "--dry-run", "--show")
    assert shown.returncode == 0, shown.stderr
    assert "FROM python:3.11-slim" in shown.stdout and 'url = "tcp://bus:7355"' in shown.stdout
    assert snapshot(shop) == before


def test_without_loom_toml_the_command_says_what_to_do(tmp_path: Path) -> None:
    result = run_loom(tmp_path, "deploy")
    assert result.returncode == 1
    assert "error: no loom.toml in" in result.stderr
    assert "pass --config path/to/loom.toml" in result.stderr
    assert not (tmp_path / "deploy").exists()


def test_a_project_without_agents_is_an_error_on_the_command_line(shop: Path) -> None:
    (shop / "loom.toml").write_text('[llm.a]\nmodel = "openai/x"\n')
    result = run_loom(shop, "deploy", "--dry-run")
    assert result.returncode == 1
    assert "nothing to deploy: declare agents with `loom create agent`" in result.stderr


# -- the processes the files start, on loopback ------------------------------------------


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
async def test_the_generated_services_work_together(shop: Path, tmp_path: Path) -> None:
    """The Compose commands, run as local processes with the generated loom.deploy.toml (its
    `bus` host made loopback and its volume a temporary folder): the group joins the bus,
    answers, and memory and spans land on the shared data folder."""
    assert loom_deploy().exit_code == 0
    deploy = shop / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    port, data = free_port(), tmp_path / "data"
    settings = (deploy / "loom.deploy.toml").read_text()
    settings = settings.replace("tcp://bus:7355", f"tcp://127.0.0.1:{port}")
    (shop / "loom.deploy.toml").write_text(settings.replace("/var/lib/loom", str(data)))
    env = {**python_env(), "LOOM_CONFIG": str(shop / "loom.deploy.toml")}

    def start(service: str) -> subprocess.Popen[str]:
        command = [
            arg.replace("7355", str(port)) for arg in compose["services"][service]["command"]
        ]
        return subprocess.Popen(
            [PYTHON, "-m", "loom_kernel.cli.app", *command],
            cwd=shop,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    processes = [start("bus")]
    try:
        await _wait_for_port(port)
        processes.append(start("front"))
        async with open_runtime(load_config(shop / "loom.deploy.toml")) as rt:
            reply = await _ask_until_answered(rt)
        assert reply == {"echo": {"n": 1}, "by": "echo"}
        assert (data / "memory.db").is_file()
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=30) for process in processes]
        for process, (_, err) in zip(processes, outputs, strict=True):
            print(f"--- {process.args[3:]} exited {process.returncode}\n{err}")  # on failure
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert (data / "traces.db").is_file()


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
async def test_the_generated_services_work_together_on_nats(
    shop: Path, tmp_path: Path, nats_server: LocalCluster
) -> None:
    """As above on NATS, a local nats-server standing in for the `nats` service: the
    group joins it with loom.deploy.toml and answers; a runtime with the studio's copy
    stores the spans on the shared data folder."""
    with (shop / "loom.toml").open("a") as toml:
        toml.write('\n[bus]\nbackend = "nats"\n')
    assert loom_deploy().exit_code == 0
    deploy, data = shop / "deploy", tmp_path / "data"
    for name in ("loom.deploy.toml", "loom.studio.toml"):
        settings = (deploy / name).read_text().replace("nats://nats:4222", nats_server.urls[0])
        (shop / name).write_text(settings.replace("/var/lib/loom", str(data)))
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    env = {**python_env(), "LOOM_CONFIG": str(shop / "loom.deploy.toml")}

    def start(service: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [PYTHON, "-m", "loom_kernel.cli.app", *compose["services"][service]["command"]],
            cwd=shop,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    group = start("front")
    try:
        async with open_runtime(load_config(shop / "loom.studio.toml")) as rt:
            assert rt.connection is not None and rt.connection.embedded  # stores the spans
            reply = await _ask_until_answered(rt)
        assert reply == {"echo": {"n": 1}, "by": "echo"}
        assert (data / "memory.db").is_file()
    finally:
        group.send_signal(signal.SIGTERM)
        _, err = group.communicate(timeout=30)
        print(f"--- loom run exited {group.returncode}\n{err}")  # on failure
    assert group.returncode == 0, err
    assert (data / "traces.db").is_file()


async def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on {port} after {timeout} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _ask_until_answered(rt: Any, timeout: float = 30.0) -> Any:
    """The worker starts after `loom run`: ask until its agent answers (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return (await rt.request("echo.ask", {"n": 1}, timeout=1.0)).data
        except TimeoutError:
            if loop.time() > deadline:
                raise
