"""Pure state machines and formats of the log: no awaits, no IO."""
