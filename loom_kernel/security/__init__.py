"""Security of the bus: CURVE key pairs, the broker's ZAP gatekeeper, and the settings a
secured broker and its clients put on their sockets (``docs/security.md``).

- :mod:`.keys`: key pairs on disk (``loom keys generate``);
- :mod:`.zap`: who may connect to a broker, and as which identity;
- :mod:`.curve`: ``[bus] security = "curve"`` applied to sockets.
"""

from .curve import ClientCurve, ServerCurve, client_curve, keys_folder, server_curve
from .keys import BROKER, KeyPair, generate_keys, key_names, load_keys, load_public_key
from .zap import Gatekeeper

__all__ = [
    "BROKER",
    "ClientCurve",
    "Gatekeeper",
    "KeyPair",
    "ServerCurve",
    "client_curve",
    "generate_keys",
    "key_names",
    "keys_folder",
    "load_keys",
    "load_public_key",
    "server_curve",
]
