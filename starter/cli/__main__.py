"""`python -m starter.cli` works the same as the `changeloop` console script."""

from starter.cli.main import app

app()
