"""Helpers for suites that run the real thing: agent processes on free loopback ports."""
