"""Where a deployment's pieces live: the ports, the paths in the image, the user, the
bus's address (Loom's broker, or NATS), and the security notes the generated files repeat."""

from __future__ import annotations

__all__ = [
    "APP_DIR",
    "BUS_PORT",
    "BUS_URL",
    "CONFIG_PATH",
    "DATA_DIR",
    "KEYS_DIR",
    "NATS_CLUSTER_PORT",
    "NATS_FILES",
    "NATS_FILES_DIR",
    "NATS_IMAGE",
    "NATS_MONITOR_PORT",
    "NATS_PORT",
    "NATS_REPLICAS",
    "NATS_STORAGE",
    "NATS_URL",
    "STUDIO_PORT",
    "UID",
    "nats_note",
    "security_note",
]

BUS_PORT = 7355  # publishers; subscribers use BUS_PORT + 1
STUDIO_PORT = 5006
APP_DIR = "/app"
DATA_DIR = "/var/lib/loom"
CONFIG_PATH = f"{APP_DIR}/loom.deploy.toml"
UID = 10001
BUS_URL = f"tcp://bus:{BUS_PORT}"
KEYS_DIR = "/run/loom-keys"  # the bus's CURVE key pairs ([bus] security = "curve")

# [bus] backend = "nats": the official server image, pinned (a new minor is a choice)
NATS_IMAGE = "nats:2.11-alpine"
NATS_PORT = 4222  # clients
NATS_CLUSTER_PORT = 6222  # routes between the servers of a cluster
NATS_MONITOR_PORT = 8222  # /healthz, /varz
NATS_URL = f"nats://nats:{NATS_PORT}"  # the `nats` service a deployment runs
NATS_REPLICAS = 3  # servers of the Kubernetes StatefulSet (JetStream needs a quorum)
NATS_STORAGE = "10Gi"  # each server's JetStream volume
NATS_FILES_DIR = "/run/loom-nats"  # [bus] credentials, nkey and tls_* files, mounted
#: The [bus] settings naming a file, and the file's name in NATS_FILES_DIR (fixed names:
#: two settings may name files of the same name in different folders).
NATS_FILES = {
    "credentials": "nats.creds",
    "nkey": "nkey.seed",
    "tls_ca": "ca.pem",
    "tls_cert": "cert.pem",
    "tls_key": "key.pem",
}


def security_note(secured: bool) -> str:
    """What the generated files say about the bus's security."""
    if secured:
        return (
            '[bus] security = "curve": only a process holding a key pair the broker admits\n'
            f"joins the bus (the keys are mounted at {KEYS_DIR}). There are no per-identity\n"
            "topic ACLs yet: every admitted process reads and publishes every event\n"
            "(docs/security.md)."
        )
    return (
        '[bus] security = "none": whoever reaches ports '
        f"{BUS_PORT}-{BUS_PORT + 1} reads and publishes every\n"
        'event. Keep the bus on a private network, or set [bus] security = "curve"\n'
        "(docs/security.md, docs/deploy.md)."
    )


def nats_note(external: bool) -> str:
    """What the generated files say about a NATS bus's security (``external``: a cluster
    outside the deployment, secured by its own configuration)."""
    if external:
        return (
            '[bus] backend = "nats": the bus is a NATS cluster outside this deployment, secured\n'
            "by its own configuration; the processes prove themselves with [bus] credentials,\n"
            f"nkey or user (files mounted at {NATS_FILES_DIR}, never in the image; the password\n"
            "or token from $LOOM_NATS_PASSWORD / $LOOM_NATS_TOKEN) (docs/deploy.md)."
        )
    return (
        '[bus] backend = "nats": the bus is the NATS server this deployment runs, without\n'
        f"authentication: whoever reaches port {NATS_PORT} reads and publishes every event.\n"
        "Keep it on a private network, or run NATS with its own security and pass\n"
        "`loom deploy --nats-url` (docs/deploy.md)."
    )
