"""`python -m sim run --seed N [--trace] [--faulty-network]`: one simulated smoke run.

Prints the seed and every option first, then (with --trace) the trace as it
happens, then a summary. Exit codes follow the simulator's convention:
0 passed, 127 the simulation crashed, 129 a correctness check failed.

String hashing and object addresses must not vary between runs of one seed,
so the runner re-executes itself with PYTHONHASHSEED fixed and, on Linux,
address-space randomisation off.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import traceback

from sim.loop import hash_seed_fixed

EXIT_CRASH = 127
EXIT_CORRECTNESS = 129
PINNED_HASH_SEED = "0"
ADDR_NO_RANDOMIZE = 0x0040000  # Linux personality flag
PERSONALITY_QUERY = 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    from sim.smoke import SmokeOptions, run_smoke  # heavy: imported after any re-exec

    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the smoke workload for one seed")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--trace", action="store_true", help="print every trace line")
    run.add_argument(
        "--faulty-network", action="store_true", help="delay, reset, clog and partition"
    )
    run.add_argument("--records", type=int, default=SmokeOptions(0).records_per_ack_mode)
    args = parser.parse_args(argv)

    if args.faulty_network:
        options = SmokeOptions.faulty(args.seed, args.records)
    else:
        options = SmokeOptions(args.seed, args.records)
    print(f"sim run {options.describe()}", flush=True)
    logging.basicConfig(level=logging.CRITICAL)  # clients log their retries; the trace tells
    try:
        result = run_smoke(options, echo=print if args.trace else None)
    except Exception:
        traceback.print_exc()
        print(f"CRASH seed={args.seed}", flush=True)
        return EXIT_CRASH
    print(
        f"acked={result.acked} unacked={result.unacked} consumed={result.consumed} "
        f"resets={result.resets} virtual_ms={result.virtual_ms} "
        f"trace_lines={result.trace.count} trace_digest={result.trace.digest()}"
    )
    for problem in result.problems:
        print(f"PROBLEM {problem}")
    return EXIT_CORRECTNESS if result.problems else 0


def _addresses_fixed() -> bool:
    """Turn off address-space randomisation for the next exec, where Linux allows it:
    sets of objects hash by address, so their order follows the addresses. Returns
    whether this process already runs without it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(PERSONALITY_QUERY)
        if current < 0 or current & ADDR_NO_RANDOMIZE:
            return True  # unsupported, or already off
        libc.personality(current | ADDR_NO_RANDOMIZE)
        return False
    except (OSError, AttributeError):
        return True


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    if not hash_seed_fixed() or not _addresses_fixed():
        os.environ.setdefault("PYTHONHASHSEED", PINNED_HASH_SEED)
        os.execv(sys.executable, [sys.executable, "-m", "sim", *sys.argv[1:]])
    sys.exit(main())
