"""Where a deployment's pieces live: the ports, the paths in the image, the user, the
broker's address, and the security note the generated files repeat."""

from __future__ import annotations

__all__ = [
    "APP_DIR",
    "BUS_PORT",
    "BUS_URL",
    "CONFIG_PATH",
    "DATA_DIR",
    "KEYS_DIR",
    "STUDIO_PORT",
    "UID",
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
