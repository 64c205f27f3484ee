"""`streamctl`: operate a StreamHouse deployment through a running agent (topics, groups, the
cluster)."""

from __future__ import annotations

import typer

from streamhouse.cli.cluster import show_cluster
from streamhouse.cli.groups import groups
from streamhouse.cli.topics import topics

app = typer.Typer(
    help="Operate StreamHouse through a running agent: topics, consumer groups, the cluster.",
    no_args_is_help=True,
)
app.add_typer(topics, name="topics")
app.add_typer(groups, name="groups")
app.command("cluster")(show_cluster)
