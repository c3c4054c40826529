"""The Market Analyst demo: six agents from prices and news to paper trades.

    data ──market.price.<SYM>──▶ trend ─┐
                              ├▶ risk ──┼─analysis.*.<SYM>─▶ planner ─plan.<SYM>─▶ executor
                              └▶ sentiment (MCP web-search) ─┘                      │
                                   trade.order.* / trade.fill.* / trade.position.* ◀┘

See docs/demo.md. Every agent reads its settings from the ``[demo]`` section of the
project's ``loom.toml`` (``settings.py``) and speaks the payloads of ``schemas.py``.
"""
