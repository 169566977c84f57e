"""`python -m bench [--full] [name ...]`: run the named benchmarks (default: all), then print one summary table.

Quick sizes by default (`make bench`, a few minutes); `--full` (`make bench FULL=1`) runs the issue's sizes. The
process ends with os._exit after its cleanup, as the CLI does: a process that created a Temporal client can crash
at interpreter exit otherwise (sdk-python issue 300, "Fatal Python error: PyGILState_Release").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback

from bench import capacity, change, common, intake, reconcile, wave

BENCHES = {
    "intake": intake.main,
    "capacity": capacity.main,
    "change": change.main,
    "wave": wave.main,
    "reconcile": reconcile.main,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHES) + " (default: all)")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (long); quick sizes otherwise")
    args = parser.parse_args()
    common.FULL = args.full or os.environ.get("FULL", "") not in ("", "0")
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; have: {', '.join(BENCHES)}")
    common.compile_checkout()
    failed = []
    began = time.perf_counter()
    for name in args.names or list(BENCHES):
        started = time.perf_counter()
        try:
            asyncio.run(BENCHES[name]())
        except Exception:
            traceback.print_exc()
            failed.append(name)
        common.figure(name, "bench wall time", f"{time.perf_counter() - started:.0f} s")
    wall = time.perf_counter() - began
    if common.FULL or args.names:
        common.figure("all", "wall time", f"{wall:.0f} s")
    else:  # issue 16: `make bench` (every bench, quick sizes) runs in under 5 minutes
        common.figure("all", "wall time (make bench, quick)", f"{wall:.0f} s", "< 300 s", wall < 300)
    print(f"\nsummary ({'full' if common.FULL else 'quick'} sizes; load = 1-minute load average when taken)")
    print(common.summary_table(common.FIGURES))
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
