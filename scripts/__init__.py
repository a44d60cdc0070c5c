"""Glue and benchmarks run as ``python scripts/NAME.py`` (by the Makefile); importable as ``scripts.NAME`` by tests."""
