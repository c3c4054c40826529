"""``loom bench``: the bus against raw pyzmq in the same run (:mod:`.bus`), and tool
calls against the MCP SDK's own client (:mod:`.tools`)."""

from .bus import BenchPlan, BenchResult
from .run import run_bench
from .tools import run_tool_bench

__all__ = ["BenchPlan", "BenchResult", "run_bench", "run_tool_bench"]
