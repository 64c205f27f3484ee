"""Real adapters for the ports: the only package (with server/) that touches the world."""
