"""The base of every ``loom.toml`` section model (kept apart so ``config.py`` and its
sibling section modules share it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    # strict: TOML has real types, so `stall_after = true` or `hwm = "5"` is a mistake to
    # report, not a value to coerce (an int still counts as a float).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
