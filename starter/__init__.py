"""How work enters: the webhook shim (FastAPI), the CLI (typer) and Temporal schedules."""
