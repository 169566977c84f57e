"""Local stand-ins for a laptop and for tests: a ServiceNow instance emulator (FastAPI + SQLite).

`SandboxServer(SandboxConfig(port=0))` runs one in a background thread; `serve(config)` in the foreground.
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer, run_sandbox, serve

__all__ = ["SandboxConfig", "SandboxServer", "create_app", "run_sandbox", "serve"]
