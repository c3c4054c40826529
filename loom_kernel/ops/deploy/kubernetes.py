"""The Kubernetes manifests under ``k8s/``: a namespace, the configuration, the shared
volume, a network policy, the bus (Loom's broker, or a NATS StatefulSet), the studio and
one Deployment per agent group."""

from __future__ import annotations

import hashlib
from typing import Any

from .layout import (
    BUS_PORT,
    CONFIG_PATH,
    DATA_DIR,
    KEYS_DIR,
    NATS_CLUSTER_PORT,
    NATS_FILES,
    NATS_FILES_DIR,
    NATS_IMAGE,
    NATS_MONITOR_PORT,
    NATS_PORT,
    NATS_REPLICAS,
    NATS_STORAGE,
    STUDIO_PORT,
    UID,
)
from .plan import DeployOptions, Group, Plan
from .serialize import yaml_file

__all__ = ["kubernetes"]


def kubernetes(
    plan: Plan, options: DeployOptions, settings: str, studio_settings: str | None = None
) -> dict[str, str]:
    """The manifests under ``k8s/``: apply them with ``kubectl apply -k k8s``
    (``studio_settings``: the studio's own ``loom.toml`` on NATS)."""
    k8s = _Kubernetes(plan, options, settings, studio_settings)
    files = {
        "namespace.yaml": [k8s.namespace()],
        "configmap.yaml": [k8s.config_map()],
        "volume.yaml": [k8s.volume()],
        "networkpolicy.yaml": [k8s.network_policy()],
        **k8s.bus_files(),
        "studio.yaml": [k8s.studio(), k8s.service("studio", "studio", [("http", STUDIO_PORT)])],
        **{f"agents-{group.service}.yaml": [k8s.group(group)] for group in plan.groups},
    }
    rendered = {f"k8s/{name}": yaml_file(docs, k8s.header(name)) for name, docs in files.items()}
    rendered["k8s/kustomization.yaml"] = yaml_file(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(files),
        },
        "Apply with: kubectl apply -k k8s (secrets.example.yaml is not applied: see it)."
        + (k8s.keys_help() if plan.keys is not None else "")
        + (k8s.nats_files_help() if plan.nats is not None and plan.nats.files else ""),
    )
    if plan.all_secrets:
        rendered["k8s/secrets.example.yaml"] = yaml_file([k8s.secret_example()], k8s.secret_help())
    return rendered


class _Kubernetes:
    """Builds the manifests of one deployment (names, labels and pod specs in one place)."""

    def __init__(
        self, plan: Plan, options: DeployOptions, settings: str, studio_settings: str | None
    ):
        self.plan = plan
        self.options = options
        self.project = options.project
        self.checksum = _digest(settings + (studio_settings or ""))
        self.settings = settings
        self.studio_settings = studio_settings

    def header(self, name: str) -> str:
        noted = ("bus.yaml", "nats.yaml", "networkpolicy.yaml")
        security = f"\n{self.plan.bus_note}" if name in noted else ""
        return f"Kubernetes: {name} of project {self.project}.{security}"

    def labels(self, name: str, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": self.project,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": self.project,
            "app.kubernetes.io/managed-by": "loom-deploy",
        }

    def selector(self, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": self.project}

    def metadata(self, name: str, component: str, label: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.options.ns,
            "labels": self.labels(label or name, component),
        }

    def namespace(self) -> dict[str, Any]:
        meta = self.metadata(self.options.ns, "namespace", self.project)
        del meta["namespace"]
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}

    def config_map(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(f"{self.project}-config", "config", self.project),
            "data": {
                "loom.toml": self.settings,
                **({"loom.studio.toml": self.studio_settings} if self.studio_settings else {}),
            },
        }

    def volume(self) -> dict[str, Any]:
        # SQLite (memory, spans) shares a file between processes of one machine only: the
        # claim is ReadWriteOnce and every pod is scheduled on the bus's node
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self.metadata(f"{self.project}-data", "storage", self.project),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }

    def network_policy(self) -> dict[str, Any]:
        ours = {"matchLabels": {"app.kubernetes.io/part-of": self.project}}
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.metadata(f"{self.project}-internal", "network", self.project),
            "spec": {
                "podSelector": ours,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": ours}]}],
            },
        }

    def service(self, name: str, target: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(name, target),
            "spec": {
                "selector": self.selector(target),
                "ports": [
                    {"name": port_name, "port": port, "targetPort": port}
                    for port_name, port in ports
                ],
            },
        }

    def deployment(self, name: str, component: str, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(name, component),
            "spec": {
                "replicas": 1,
                # one copy at a time: two brokers would split the bus, two copies of an
                # agent would handle every event twice
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": self.selector(name)},
                "template": self.template(name, component, pod),
            },
        }

    def template(self, name: str, component: str, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {
                "labels": self.labels(name, component),
                # a changed loom.toml rolls the pods on the next apply
                "annotations": {"checksum/config": self.checksum},
            },
            "spec": pod,
        }

    def pod(
        self,
        args: list[str],
        *,
        env: list[dict[str, Any]] | None = None,
        config: str = "loom.toml",
        **extra: Any,
    ) -> dict[str, Any]:
        """A pod of the image running ``loom ARGS`` with the ConfigMap's key ``config`` as
        its settings, the shared volume, and the bus's keys or NATS files when any."""
        container: dict[str, Any] = {
            "name": "loom",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": [{"name": "LOOM_CONFIG", "value": CONFIG_PATH}, *(env or [])],
            "volumeMounts": [
                {
                    "name": "config",
                    "mountPath": CONFIG_PATH,
                    "subPath": config,
                    "readOnly": True,
                },
                {"name": "data", "mountPath": DATA_DIR},
                *self._keys_mount(),
                *self._nats_files_mount(),
            ],
            **extra,
        }
        return {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,
            },
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{self.project}-config"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": f"{self.project}-data"}},
                *self._keys_volume(),
                *self._nats_files_volume(),
            ],
        }

    def _keys_mount(self) -> list[dict[str, Any]]:
        if self.plan.keys is None:
            return []
        return [{"name": "bus-keys", "mountPath": KEYS_DIR, "readOnly": True}]

    def _keys_volume(self) -> list[dict[str, Any]]:
        """The bus's key pairs, from a Secret the operator creates (keys_help): readable by
        the pod's group (fsGroup), nobody else."""
        if self.plan.keys is None:
            return []
        secret = {"secretName": f"{self.project}-bus-keys", "defaultMode": 0o440}
        return [{"name": "bus-keys", "secret": secret}]

    def _nats_files_mount(self) -> list[dict[str, Any]]:
        if self.plan.nats is None or not self.plan.nats.files:
            return []
        return [{"name": "nats-files", "mountPath": NATS_FILES_DIR, "readOnly": True}]

    def _nats_files_volume(self) -> list[dict[str, Any]]:
        """NATS's credentials, nkey and TLS files, from a Secret the operator creates
        (nats_files_help), as the bus's key pairs."""
        if self.plan.nats is None or not self.plan.nats.files:
            return []
        secret = {"secretName": f"{self.project}-nats", "defaultMode": 0o440}
        return [{"name": "nats-files", "secret": secret}]

    def nats_files_help(self) -> str:
        files = self.plan.nats.files if self.plan.nats is not None else ()
        sources = "".join(f" \\\n    --from-file={NATS_FILES[name]}={path}" for name, path in files)
        return (
            f"\nFirst create the Secret of the NATS files ([bus] {', '.join(n for n, _ in files)}),"
            "\nonce, outside version control, from the project folder:\n"
            f"  kubectl create secret generic {self.project}-nats "
            f"--namespace {self.options.ns}{sources}"
        )

    def keys_help(self) -> str:
        return (
            "\nFirst create the Secret of the bus's key pairs ([bus] keys: "
            f"{self.plan.keys}),\nonce, outside version control, from the project folder:\n"
            f"  kubectl create secret generic {self.project}-bus-keys "
            f"--namespace {self.options.ns} --from-file={self.plan.keys}/"
        )

    def near_bus(self, pod: dict[str, Any], *, affine: bool = True) -> dict[str, Any]:
        """A pod that waits for the bus (when the deployment runs it) and, ``affine``, runs
        on the node of the shared SQLite volume: the bus's, or on NATS the studio's."""
        if self.plan.nats is None:
            anchor, target = "bus", ("bus", "the bus", BUS_PORT)
        else:
            anchor = "studio"
            target = ("nats", "NATS", NATS_PORT) if self.plan.runs_nats else None
        extra: dict[str, Any] = {}
        if target is not None:
            extra["initContainers"] = [self._wait_for(*target)]
        if affine:
            extra["affinity"] = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": self.selector(anchor)},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
        return {**pod, **extra}

    def _wait_for(self, host: str, what: str, port: int) -> dict[str, Any]:
        """An init container that returns once ``host:port`` accepts connections."""
        wait = (
            "import socket, time\n"
            "while True:\n"
            "    try:\n"
            f"        socket.create_connection(('{host}', {port}), timeout=2).close()\n"
            "        break\n"
            "    except OSError:\n"
            f"        print('waiting for {what} at {host}:{port}', flush=True)\n"
            "        time.sleep(1)\n"
        )
        return {
            "name": "wait-for-bus",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-c", wait],
        }

    def bus_files(self) -> dict[str, list[dict[str, Any]]]:
        """The bus's manifests: Loom's broker, the NATS cluster, or none (external NATS)."""
        if self.plan.nats is None:
            ports = [("publish", BUS_PORT), ("subscribe", BUS_PORT + 1)]
            return {"bus.yaml": [self.bus(), self.service("bus", "bus", ports)]}
        if not self.plan.nats.external:
            headless = self.service(
                "nats-headless",
                "nats",
                [
                    ("client", NATS_PORT),
                    ("cluster", NATS_CLUSTER_PORT),
                    ("monitor", NATS_MONITOR_PORT),
                ],
            )
            # the servers find each other (routes) before they are ready
            headless["spec"].update(clusterIP="None", publishNotReadyAddresses=True)
            client = self.service("nats", "nats", [("client", NATS_PORT)])
            return {"nats.yaml": [self.nats_config(), headless, client, self.nats()]}
        return {}

    def nats_conf(self) -> str:
        """``nats.conf`` of every server of the StatefulSet: JetStream, and routes to the
        three pods by their stable names (``nats-N.nats-headless.<namespace>.svc``)."""
        routes = "".join(
            f"    nats://nats-{index}.nats-headless.{self.options.ns}.svc:{NATS_CLUSTER_PORT}\n"
            for index in range(NATS_REPLICAS)
        )
        return (
            f"# NATS for project {self.project}: {NATS_REPLICAS} servers (StatefulSet nats), "
            "JetStream on each.\n"
            "server_name: $SERVER_NAME  # the pod's name (env)\n"
            f"port: {NATS_PORT}\n"
            f"http_port: {NATS_MONITOR_PORT}\n"
            "jetstream {\n  store_dir: /data\n}\n"
            "cluster {\n"
            f"  name: {self.project}\n"
            f"  port: {NATS_CLUSTER_PORT}\n"
            f"  routes: [\n{routes}  ]\n"
            "  connect_retries: 120\n"
            "}\n"
        )

    def nats_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata("nats-conf", "bus", "nats"),
            "data": {"nats.conf": self.nats_conf()},
        }

    def nats(self) -> dict[str, Any]:
        """The NATS StatefulSet: three servers of one cluster, each with its JetStream
        volume, started together (a JetStream cluster needs a quorum to become healthy)."""
        pod = {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
            },
            "terminationGracePeriodSeconds": 60,
            "affinity": {  # one server per node where there are enough
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": self.selector("nats")},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }
                    ]
                }
            },
            "containers": [self._nats_container()],
            "volumes": [{"name": "config", "configMap": {"name": "nats-conf"}}],
        }
        template = {
            "metadata": {
                "labels": self.labels("nats", "bus"),
                "annotations": {"checksum/config": _digest(self.nats_conf())},
            },
            "spec": pod,
        }
        claim = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": NATS_STORAGE}},
            },
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.metadata("nats", "bus"),
            "spec": {
                "serviceName": "nats-headless",
                "replicas": NATS_REPLICAS,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": self.selector("nats")},
                "template": template,
                "volumeClaimTemplates": [claim],
            },
        }

    def _nats_container(self) -> dict[str, Any]:
        """One NATS server: healthy once it joined the cluster and JetStream answers."""

        def probe(path: str, period: int, **more: int) -> dict[str, Any]:
            get = {"path": path, "port": NATS_MONITOR_PORT}
            return {"httpGet": get, "periodSeconds": period, **more}

        return {
            "name": "nats",
            "image": NATS_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "args": ["--config", "/etc/nats/nats.conf"],
            "env": [
                {"name": "SERVER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "ports": [
                {"name": "client", "containerPort": NATS_PORT},
                {"name": "cluster", "containerPort": NATS_CLUSTER_PORT},
                {"name": "monitor", "containerPort": NATS_MONITOR_PORT},
            ],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
                {"name": "data", "mountPath": "/data"},
            ],
            "startupProbe": probe("/healthz", 5, failureThreshold=90),
            "readinessProbe": probe("/healthz?js-server-only=true", 10),
            "livenessProbe": probe("/healthz?js-enabled-only=true", 30),
        }

    def bus(self) -> dict[str, Any]:
        probe = {"tcpSocket": {"port": BUS_PORT}, "periodSeconds": 10}
        pod = self.pod(
            ["bus", "--url", f"tcp://0.0.0.0:{BUS_PORT}"],
            ports=[
                {"name": "publish", "containerPort": BUS_PORT},
                {"name": "subscribe", "containerPort": BUS_PORT + 1},
            ],
            readinessProbe={**probe, "periodSeconds": 2},
            livenessProbe=probe,
        )
        return self.deployment("bus", "bus", pod)

    def studio(self) -> dict[str, Any]:
        on_nats = self.plan.nats is not None
        pod = self.pod(
            ["studio", "--address", "0.0.0.0", "--port", str(STUDIO_PORT)],
            env=self._secret_env(self.plan.bus_secrets),
            # on NATS the studio's own copy: it stores the spans (render.deploy_toml)
            config="loom.studio.toml" if on_nats else "loom.toml",
            ports=[{"name": "http", "containerPort": STUDIO_PORT}],
            readinessProbe={"tcpSocket": {"port": STUDIO_PORT}, "periodSeconds": 5},
        )
        # on NATS the studio is where the others go: the node of the shared volume
        return self.deployment("studio", "studio", self.near_bus(pod, affine=not on_nats))

    def _secret_env(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                # optional: a missing key fails the call that needs it, naming the variable
                "valueFrom": {
                    "secretKeyRef": {
                        "name": f"{self.project}-secrets",
                        "key": name,
                        "optional": True,
                    }
                },
            }
            for name in names
        ]

    def group(self, group: Group) -> dict[str, Any]:
        env = self._secret_env((*self.plan.secrets, *self.plan.bus_secrets))
        pod = self.near_bus(self.pod(["run", "--group", group.name], env=env))
        # `loom run` restarts its worker by the group's policy; the Deployment restarts
        # `loom run` itself, should it exit
        return self.deployment(group.service, "agents", pod)

    def secret_example(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.metadata(f"{self.project}-secrets", "secrets", self.project),
            "type": "Opaque",
            "stringData": {name: "" for name in self.plan.all_secrets},
        }

    def secret_help(self) -> str:
        literals = "".join(f" \\\n    --from-literal={name}=..." for name in self.plan.all_secrets)
        return (
            "The keys the agents read, by name. Create the Secret once, outside version "
            "control:\n"
            f"  kubectl create secret generic {self.project}-secrets "
            f"--namespace {self.options.ns}{literals}\n"
            "or fill the values below in a copy and apply that copy. Not part of\n"
            "kustomization.yaml: applying this file as it is would empty the keys."
        )


def _digest(text: str) -> str:
    """A short digest of a configuration: pods annotated with it roll when it changes."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
