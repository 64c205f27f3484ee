"""`streamctl quotas`: list, set and remove an org's quotas on a running agent (its HTTP API),
for a user, a client id, their defaults, or (with no entity option) the org itself.

Setting an org's own quotas and limits (org_storage_bytes, org_partitions) takes a key of the
default org's admins; an org's admins set its clients' quotas.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamhouse.cli.agent_client import (
    DEFAULT_HTTP,
    DEFAULT_TIMEOUT_S,
    CommandError,
    Http,
    Key,
    Output,
    OutputFormat,
    Secret,
    TimeoutS,
    print_json,
    say,
    show_rows,
)
from streamhouse.cli.tenancy import TenancyClient, run_with_client
from streamhouse.ports.tenancy import DEFAULT_ORG
from streamhouse.tenancy.quotas import CLIENT_ID, QUOTA_KEYS, USER

quotas = typer.Typer(
    help="List, set and remove an org's quotas (Kafka's client quotas and the org's limits).",
    no_args_is_help=True,
)

Org = Annotated[str, typer.Option("--org", help="The org whose quotas these are.")]
User = Annotated[str | None, typer.Option("--user", help="A user (API key id).")]
ClientId = Annotated[str | None, typer.Option("--client-id", help="A client id.")]
DefaultUser = Annotated[
    bool, typer.Option("--default-user", help="The default of every user without its own.")
]
DefaultClientId = Annotated[
    bool,
    typer.Option("--default-client-id", help="The default of every client id without its own."),
]
DEFAULT_NAME = "<default>"


def _entity(
    user: str | None, client_id: str | None, default_user: bool, default_client_id: bool
) -> dict[str, str | None]:
    """The entity the options name; {} (the org itself) when they name none."""
    entity: dict[str, str | None] = {}
    for kind, name, default in (
        (USER, user, default_user),
        (CLIENT_ID, client_id, default_client_id),
    ):
        if name is not None and default:
            raise CommandError(f"give --{kind} or --default-{kind}, not both")
        if name is not None or default:
            entity[kind] = name
    return entity


def _settings(pairs: list[str]) -> dict[str, float]:
    settings: dict[str, float] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        try:
            settings[key] = float(text)
        except ValueError:
            separator = ""
        if not separator:
            known = ", ".join(sorted(QUOTA_KEYS))
            raise CommandError(f"{pair!r} is not KEY=NUMBER (keys: {known})")
    return settings


def _shown_entity(entity: dict[str, str | None]) -> str:
    if not entity:
        return "org"
    return ", ".join(f"{kind}={name or DEFAULT_NAME}" for kind, name in sorted(entity.items()))


@quotas.command("list")
def list_quotas(
    org: Org = DEFAULT_ORG,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """List the org's quotas, one row per entity and key."""

    def work(client: TenancyClient) -> None:
        entries = client.call("GET", f"/api/v1/orgs/{org}/quotas")
        if output is Output.JSON:
            print_json(entries)
            return
        rows = [
            {"entity": _shown_entity(entry["entity"]), "key": name, "value": _number(value)}
            for entry in entries
            for name, value in sorted(entry["values"].items())
        ]
        show_rows(rows, ["entity", "key", "value"], output, title=f"quotas of org {org}")

    run_with_client((http, key, secret, timeout_s), work)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@quotas.command("set")
def set_quotas(
    settings: Annotated[
        list[str], typer.Argument(help="KEY=NUMBER, e.g. producer_byte_rate=1048576.")
    ],
    org: Org = DEFAULT_ORG,
    user: User = None,
    client_id: ClientId = None,
    default_user: DefaultUser = False,
    default_client_id: DefaultClientId = False,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Set quotas of an entity (no entity option: of the org itself)."""

    entity = _entity(user, client_id, default_user, default_client_id)
    _alter(org, {"entity": entity, "set": _settings(settings)}, (http, key, secret, timeout_s))
    say(f"set {', '.join(settings)} for {_shown_entity(entity)} of org {org}")


@quotas.command("remove")
def remove_quotas(
    names: Annotated[list[str], typer.Argument(metavar="KEY...", help="The quota keys to remove.")],
    org: Org = DEFAULT_ORG,
    user: User = None,
    client_id: ClientId = None,
    default_user: DefaultUser = False,
    default_client_id: DefaultClientId = False,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Remove quotas of an entity (no entity option: of the org itself)."""

    entity = _entity(user, client_id, default_user, default_client_id)
    _alter(org, {"entity": entity, "remove": names}, (http, key, secret, timeout_s))
    say(f"removed {', '.join(names)} of {_shown_entity(entity)} of org {org}")


def _alter(
    org: str, body: dict[str, Any], client_args: tuple[str, str | None, str | None, float]
) -> None:
    """One PUT of the org's quotas: what `set` and `remove` send."""
    run_with_client(
        client_args, lambda client: client.call("PUT", f"/api/v1/orgs/{org}/quotas", body)
    )
