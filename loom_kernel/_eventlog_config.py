"""``[eventlog]`` of ``loom.toml`` (``docs/configuration.md``): kept beside ``config.py``,
which re-exports it, so that each module stays small."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["EventLogConfig"]


class EventLogConfig(BaseModel):
    """``[eventlog]``: the event log, durable subscriptions and reliable publishing."""

    # as config.py's sections: TOML has real types, so a wrong one is reported, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = Field(
        default=False,
        description="true: the bus's process records events, reliable subscriptions get "
        "what they missed replayed, reliable topics are acknowledged. false (default): no "
        "event log; reliable subscriptions count gaps but cannot repair them.",
    )
    embedded: bool = Field(
        default=True,
        description="The process running the bus (an embedded runtime, `loom bus`) runs the "
        "event log; false: run `loom log` yourself.",
    )
    path: str = Field(
        default=".loom/events.db", description="SQLite file of the log (relative: to the project)."
    )
    topics: list[str] = Field(
        default_factory=lambda: ["*"], description="Topic patterns the log records."
    )
    exclude: list[str] | None = Field(
        default=None,
        description="Topic patterns it does not record; unset: Loom's own high-rate reports "
        "(spans, heartbeats, client and broker statistics) and replay namespaces.",
    )
    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="SQLite's synchronous level: normal survives a crash of the process, full "
        "also a power cut (slower).",
    )
    retention_hours: float = Field(
        default=24.0, gt=0, description="Events older than this leave the log."
    )
    max_size_mb: float = Field(
        default=1024.0, ge=1, description="The log keeps at most this much data (oldest go first)."
    )
    durable: bool = Field(
        default=True,
        description="Reliable subscriptions keep a cursor in the log and get missed events "
        "replayed (after a gap or a restart).",
    )
    reliable: list[str] = Field(
        default_factory=list,
        description="Topic patterns whose publishers keep each event until the log "
        "acknowledges it, and send it again if it does not.",
    )
    max_in_flight: int = Field(
        default=100_000,
        ge=100,
        description="Events on reliable topics a process keeps unacknowledged at most; past "
        "it, publishing raises BusError.",
    )
    ack_timeout: float = Field(
        default=2.0, gt=0, description="Seconds without an ack before an event is sent again."
    )
    commit_interval: float = Field(
        default=0.05, gt=0, description="Seconds between two commits of a subscription's cursor."
    )
    journal: str | None = Field(
        default=".loom/cursors",
        description="Folder (relative: to the project) where each agent's reliable "
        "subscriptions store what their handler finished, at once, so a process killed and "
        "restarted on this machine gets no event twice; empty: the log's cursor alone "
        "(what was handled since its last commit comes again after a crash).",
    )
    request_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a subscriber waits for the log to answer."
    )
    gap_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a subscriber waits for missing events of a reliable topic to "
        "reach the log (sent again by their publisher) before counting them lost.",
    )

    @field_validator("reliable")
    @classmethod
    def _reliable_needs_the_log(cls, reliable: list[str], info: ValidationInfo) -> list[str]:
        if reliable and not info.data.get("enabled", True):
            raise ValueError(
                "reliable topics are acknowledged by the event log, which enabled = false "
                "turns off: remove reliable, or set enabled = true"
            )
        return reliable
