"""`python -m streamhouse.testing.fault_proxy`: a toxiproxy-compatible fault proxy server."""

from __future__ import annotations

import argparse
import asyncio

from streamhouse.testing.fault_proxy.server import DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m streamhouse.testing.fault_proxy",
        description="A TCP fault proxy that speaks toxiproxy's HTTP API (for tests only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT})"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
