"""Deterministic simulation: sim adapters for every port, virtual time, fault injection."""
