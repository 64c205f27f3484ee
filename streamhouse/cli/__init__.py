"""Command-line entry points: `streamhouse` and `streamctl`."""
