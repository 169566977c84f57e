"""Where a bench's processes spend their CPU: `python -m bench.profile <dir>` over the collapsed stacks that
`BENCH_PYSPY=<dir> python -m bench ...` leaves (bench/common.py `_profile`: py-spy samples each worker process, busy
threads only, 50 per second).

For each file: the seconds sampled (and how much of it sat in waits), then the share of them spent under each part of the stack (a sample counts
once for every part its stack passes through, so shares overlap), and the hottest leaf functions. The parts are
named for what a ratio against raw Temporal needs to tell apart: Temporal's own work (activations, the workflow
sandbox, payload conversion) from changeloop's (its workflow and activity code, ServiceNow HTTP, pydantic models).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

RATE = 50  # samples per second (bench/common.py `_profile`)
# Leaves py-spy counts as busy that are waits: the event loop's epoll, an idle thread-pool worker. Reported apart so
# a reader can discount them.
WAITS = ("EpollSelector.select", "_worker (concurrent/futures/thread.py")

# (label, any of these substrings in a frame): the parts of a worker's CPU a bench's ratio is explained by.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("workflow activations (all)", ("_WorkflowWorker._handle_activation",)),
    ("  workflow sandbox: module imports", ("workflow_sandbox/_importer.py",)),
    ("  workflow sandbox: restrictions", ("workflow_sandbox/_restrictions.py",)),
    ("  workflow sandbox: new instances", ("_create_workflow_instance", "_SandboxedWorkflowInstance.__init__")),
    ("  payload conversion (activations)", ("bridge/_visitor.py", "temporalio/converter.py")),
    ("  changeloop workflow code", ("workflows/",)),
    ("activity tasks (all)", ("_ActivityWorker._run_activity", "_ActivityWorker._execute_activity")),
    ("  HTTP clients (httpx: ServiceNow, the fleet driver)", ("httpx/", "httpcore/", "h11/")),
    ("  changeloop activity code", ("activities/",)),
    ("  child processes (runbook steps)", ("asyncio/subprocess.py", "subprocess.py", "activities/processes.py")),
    ("pydantic (anywhere)", ("pydantic/", "pydantic_core")),
    ("Temporal core bridge (polls, completions)", ("temporalio/bridge/worker.py", "temporalio/bridge/client.py")),
    ("logging", ("logging/__init__.py",)),
    ("garbage collection", ("<gc>", "gc_collect")),
]


def summarise(path: Path, top: int = 8) -> str:
    samples = 0
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        for label, needles in PARTS:
            if any(needle in frame for frame in frames for needle in needles):
                parts[label] += n
        leaves[frames[-1]] += n
    if not samples:
        return f"{path.name}: no samples"
    waiting = sum(n for leaf, n in leaves.items() if leaf.startswith(WAITS))
    lines = [
        f"{path.name}: {samples / RATE:.1f} s sampled, {100 * waiting / samples:.0f} % of it in waits (epoll, idle pool)"
    ]
    lines += [f"  {label:<45} {100 * parts[label] / samples:5.1f} %" for label, _ in PARTS if parts[label]]
    lines.append("  hottest functions (self time):")
    lines += [f"    {100 * n / samples:5.1f} %  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.profile <BENCH_PYSPY directory>", file=sys.stderr)
        return 2
    for path in sorted(Path(argv[0]).glob("*.txt")):
        print(summarise(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
