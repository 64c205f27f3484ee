"""Services that execute the log state machines against the ports."""
