"""Where a deployment's pieces live: the ports, the paths in the image, the user, the
broker's address, and the security note the generated files repeat."""

from __future__ import annotations

__all__ = [
    "APP_DIR",
    "BUS_PORT",
    "BUS_URL",
    "CONFIG_PATH",
    "DATA_DIR",
    "SECURITY",
    "STUDIO_PORT",
    "UID",
]

BUS_PORT = 7355  # publishers; subscribers use BUS_PORT + 1
STUDIO_PORT = 5006
APP_DIR = "/app"
DATA_DIR = "/var/lib/loom"
CONFIG_PATH = f"{APP_DIR}/loom.deploy.toml"
UID = 10001
BUS_URL = f"tcp://bus:{BUS_PORT}"

SECURITY = (
    "The bus runs without CURVE authentication or topic ACLs (Loom has none yet):\n"
    f"whoever reaches ports {BUS_PORT}-{BUS_PORT + 1} reads and publishes every event. "
    "Keep it on a\nprivate network (docs/deploy.md)."
)
