"""Ports: the small abstract interfaces through which the engine sees the world."""
