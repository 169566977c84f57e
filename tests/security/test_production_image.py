"""Issue 12, item 5: the production install carries no sandbox (its admin/admin users and open /sandbox/* control
panel), neither in `pip install changeloop` nor in the image's default target."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SHIPPED = {"config", "workflows", "activities", "servicenow", "starter", "ops", "worker.py"}


def test_the_wheel_ships_the_product_and_no_sandbox_bench_or_tests(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", ".changeloop", "build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    assert (source / "sandbox" / "server.py").is_file(), "the sandbox is in the tree the wheel is built from"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("changeloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == SHIPPED
    assert not [n for n in names if n.startswith(("sandbox/", "bench/", "tests/"))]
    assert "config/runbooks.yaml" in names and "config/reconcile.yaml" in names  # package data still ships


def stages(text: str) -> dict[str, list[str]]:
    """Dockerfile stages by name (unnamed ones by position), each its instructions."""
    found: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            words = line.split()
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else f"#{len(found)}"
            found[current] = [line]
        elif current:
            found[current].append(line)
    return found


def chain(all_stages: dict[str, list[str]], name: str) -> list[str]:
    """The stages a target is built from: its FROM parents and the stages it copies from."""
    seen: list[str] = []
    todo = [name]
    while todo:
        stage = todo.pop()
        if stage in seen or stage not in all_stages:
            continue
        seen.append(stage)
        todo.append(all_stages[stage][0].split()[1])
        todo += [
            word.split("=", 1)[1] for line in all_stages[stage] for word in line.split() if word.startswith("--from=")
        ]
    return seen


def test_the_default_image_target_copies_no_sandbox() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    default = list(all_stages)[-1]
    used = chain(all_stages, default)
    assert "build" in used and "base" in used, used  # the walk follows FROM and COPY --from
    assert "sandbox" in all_stages and "sandbox" not in used
    copies = [line for stage in used for line in all_stages[stage] if line.upper().startswith(("COPY", "ADD"))]
    assert copies, "the walk found the COPY lines"
    offenders = [line for line in copies if "sandbox" in line or "bench" in line or "tests" in line]
    assert offenders == []
