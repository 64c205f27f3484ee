"""`python -m streamhouse` runs the `streamhouse` command."""

from streamhouse.cli.main import app

app()
