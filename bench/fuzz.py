"""The long schemathesis run: tests/hostile/test_fuzz.py with many examples per operation.

The test suite sends a few generated requests per operation, mode and role so it stays fast;
this sends `--examples` of each (default 200), against the same production-like edge (payments
on against the local Stripe fake, CORS allow-list, HSTS), as a client, a cleaner and an admin.
Every failure is printed with a curl line that reproduces it. Not a benchmark of speed; it
prints how long the run took, to size CI budgets.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \\
        .venv/bin/python -m bench.fuzz --examples 200 [--role client]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="generated requests per operation, mode and role")
    parser.add_argument("--role", choices=["client", "cleaner", "admin"], action="append",
                        help="only these roles (repeatable); default: all three")
    args = parser.parse_args()
    selector = "tests/hostile/test_fuzz.py::test_every_operation_keeps_its_contract"
    targets = [f"{selector}[{role}]" for role in args.role] if args.role else [selector]
    env = {**os.environ, "SPOTLESS_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", *targets, "-p", "no:cacheprovider", "-q", "--timeout", "0",
               "-rN", "--tb=short"]
    print(f"fuzz: {args.examples} examples per operation and mode, roles: {', '.join(args.role or ['all'])}",
          flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    elapsed = time.perf_counter() - started
    print(f"fuzz: {'no failures' if result.returncode == 0 else 'FAILURES above'} in {elapsed:.0f} s", flush=True)
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
