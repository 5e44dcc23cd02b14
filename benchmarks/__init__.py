"""Benchmark scripts and their private helpers (``_*``); not part of the installed library."""
