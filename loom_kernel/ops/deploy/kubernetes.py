"""The Kubernetes manifests under ``k8s/``: a namespace, the configuration, the shared
volume, a network policy, the broker, the studio and one Deployment per agent group."""

from __future__ import annotations

import hashlib
from typing import Any

from .layout import BUS_PORT, CONFIG_PATH, DATA_DIR, KEYS_DIR, STUDIO_PORT, UID, security_note
from .plan import DeployOptions, Group, Plan
from .serialize import yaml_file

__all__ = ["kubernetes"]


def kubernetes(plan: Plan, options: DeployOptions, settings: str) -> dict[str, str]:
    """The manifests under ``k8s/``: apply them with ``kubectl apply -k k8s``."""
    k8s = _Kubernetes(plan, options, settings)
    files = {
        "namespace.yaml": [k8s.namespace()],
        "configmap.yaml": [k8s.config_map()],
        "volume.yaml": [k8s.volume()],
        "networkpolicy.yaml": [k8s.network_policy()],
        "bus.yaml": [
            k8s.bus(),
            k8s.service("bus", "bus", [("publish", BUS_PORT), ("subscribe", BUS_PORT + 1)]),
        ],
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
        + (k8s.keys_help() if plan.keys is not None else ""),
    )
    if plan.secrets:
        rendered["k8s/secrets.example.yaml"] = yaml_file([k8s.secret_example()], k8s.secret_help())
    return rendered


class _Kubernetes:
    """Builds the manifests of one deployment (names, labels and pod specs in one place)."""

    def __init__(self, plan: Plan, options: DeployOptions, settings: str):
        self.plan = plan
        self.options = options
        self.project = options.project
        self.checksum = hashlib.sha256(settings.encode()).hexdigest()[:16]
        self.settings = settings

    def header(self, name: str) -> str:
        note = security_note(self.plan.keys is not None)
        security = f"\n{note}" if name in ("bus.yaml", "networkpolicy.yaml") else ""
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
            "data": {"loom.toml": self.settings},
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
        self, args: list[str], *, env: list[dict[str, Any]] | None = None, **extra: Any
    ) -> dict[str, Any]:
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
                    "subPath": "loom.toml",
                    "readOnly": True,
                },
                {"name": "data", "mountPath": DATA_DIR},
                *self._keys_mount(),
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

    def keys_help(self) -> str:
        return (
            "\nFirst create the Secret of the bus's key pairs ([bus] keys: "
            f"{self.plan.keys}),\nonce, outside version control, from the project folder:\n"
            f"  kubectl create secret generic {self.project}-bus-keys "
            f"--namespace {self.options.ns} --from-file={self.plan.keys}/"
        )

    def near_bus(self, pod: dict[str, Any]) -> dict[str, Any]:
        """A pod that waits for the bus and runs on its node (the shared SQLite volume)."""
        wait = (
            "import socket, time\n"
            "while True:\n"
            "    try:\n"
            f"        socket.create_connection(('bus', {BUS_PORT}), timeout=2).close()\n"
            "        break\n"
            "    except OSError:\n"
            f"        print('waiting for the bus at bus:{BUS_PORT}', flush=True)\n"
            "        time.sleep(1)\n"
        )
        affinity = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": self.selector("bus")},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        init = {
            "name": "wait-for-bus",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-c", wait],
        }
        return {**pod, "initContainers": [init], "affinity": affinity}

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
        pod = self.pod(
            ["studio", "--address", "0.0.0.0", "--port", str(STUDIO_PORT)],
            ports=[{"name": "http", "containerPort": STUDIO_PORT}],
            readinessProbe={"tcpSocket": {"port": STUDIO_PORT}, "periodSeconds": 5},
        )
        return self.deployment("studio", "studio", self.near_bus(pod))

    def group(self, group: Group) -> dict[str, Any]:
        env = [
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
            for name in self.plan.secrets
        ]
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
            "stringData": {name: "" for name in self.plan.secrets},
        }

    def secret_help(self) -> str:
        literals = "".join(f" \\\n    --from-literal={name}=..." for name in self.plan.secrets)
        return (
            "The keys the agents read, by name. Create the Secret once, outside version "
            "control:\n"
            f"  kubectl create secret generic {self.project}-secrets "
            f"--namespace {self.options.ns}{literals}\n"
            "or fill the values below in a copy and apply that copy. Not part of\n"
            "kustomization.yaml: applying this file as it is would empty the keys."
        )
