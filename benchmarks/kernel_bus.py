"""Kernel bus benchmark: the same run as `loom bench`, as a script.

    python benchmarks/kernel_bus.py [--quick] [--json]

Throughput of raw pyzmq PUB→SUB and of Loom (broker, envelope decoded, @on_event handler in
another process) in one run, and publish→handler latency at 1k and 10k events/s.
See docs/benchmarks.md for figures and method.
"""

from loom_kernel.cli.app import app

if __name__ == "__main__":
    import sys

    app(["bench", *sys.argv[1:]])
