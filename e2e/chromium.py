"""Debian's Chromium, installed with apt-get when missing, and the flags it needs on a machine without a network.

Playwright is used as a driver only (`executable_path`): its own browser download (`playwright install`) is never
run - it would fail on a machine that reaches nothing but the package registries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's services, each call refused here.
ARGS = [
    "--no-sandbox",  # as root in a container the setuid sandbox is unavailable
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installing Debian's package first when it is not there."""
    if CHROMIUM.is_file():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise SystemExit(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium package")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"installing Debian's chromium ({' '.join([*sudo, 'apt-get install chromium'])}) …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, apt, "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, apt, "install", "-y", "-qq", "chromium"], check=True, env=env)
    if not CHROMIUM.is_file():
        raise SystemExit(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM
