"""`streamctl`: operate a StreamHouse deployment through a running agent (topics, groups,
transactions, the cluster; produce and consume records to try a topic), and recover its
storage (`admin`) with none running."""

from __future__ import annotations

import typer

from streamhouse.cli.admin import admin
from streamhouse.cli.cluster import show_cluster
from streamhouse.cli.consume import consume
from streamhouse.cli.groups import groups
from streamhouse.cli.produce import produce
from streamhouse.cli.quotas import quotas
from streamhouse.cli.schemas import schemas
from streamhouse.cli.sql import sql
from streamhouse.cli.tenancy import keys, orgs
from streamhouse.cli.topics import topics
from streamhouse.cli.transactions import transactions

app = typer.Typer(
    help=(
        "Operate StreamHouse through a running agent: topics, consumer groups, transactions, "
        "the cluster, produce and consume to try a topic; and its stores directly: admin. "
        "With an agent requiring API keys (--auth required), give every command "
        "--key/--secret (or STREAMHOUSE_KEY and STREAMHOUSE_SECRET)."
    ),
    no_args_is_help=True,
)
app.add_typer(topics, name="topics")
app.add_typer(groups, name="groups")
app.add_typer(transactions, name="transactions")
app.add_typer(schemas, name="schemas")
app.add_typer(orgs, name="orgs")
app.add_typer(keys, name="keys")
app.add_typer(quotas, name="quotas")
app.add_typer(admin, name="admin")
app.command("cluster")(show_cluster)
app.command("produce")(produce)
app.command("consume")(consume)
app.add_typer(sql, name="sql")
