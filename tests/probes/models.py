"""Probes: models (see tests/probes/__init__.py for the form of a case)."""

PROBES = {}
