"""`python -m bench [name ...]`: run the named benchmarks (default: all)."""

from __future__ import annotations

import asyncio
import sys

from bench import intake, reconcile, wave

BENCHES = {"intake": intake.main, "reconcile": reconcile.main, "wave": wave.main}


def main() -> None:
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        if name not in BENCHES:
            raise SystemExit(f"unknown benchmark {name!r}; have: {', '.join(BENCHES)}")
        asyncio.run(BENCHES[name]())


if __name__ == "__main__":
    main()
