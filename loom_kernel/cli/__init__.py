"""The ``loom`` command line: one module per command group."""
