"""`streamctl orgs` and `streamctl keys`: create, list and delete orgs; issue, list and revoke
API keys. They call a running agent's HTTP API with an admin key (`--key/--secret`, or
`STREAMHOUSE_KEY`/`STREAMHOUSE_SECRET`) when the agent requires authentication.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from streamhouse.cli.agent_client import (
    DEFAULT_HTTP,
    DEFAULT_TIMEOUT_S,
    EXIT_FAILED,
    CommandError,
    Http,
    Key,
    Output,
    OutputFormat,
    Secret,
    TimeoutS,
    call_json_api,
    errors,
    key_headers,
    print_json,
    say,
    show_rows,
)

orgs = typer.Typer(help="Manage orgs (tenants) on a running agent.", no_args_is_help=True)
keys = typer.Typer(help="Issue, list and revoke API keys on a running agent.", no_args_is_help=True)


class TenancyClient:
    """JSON calls to the agent's /api/v1; a refusal or no answer is a CommandError."""

    def __init__(self, base: str, key: str | None, secret: str | None, timeout_s: float) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.credentials = key_headers(key, secret)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json", **self.credentials}
        unreachable = (
            f"cannot reach an agent's HTTP API at {self.base}. Set --http or STREAMHOUSE_HTTP."
        )
        return call_json_api(
            method, self.base + path, body, headers, self.timeout_s, _refusal, unreachable
        )


def _refusal(refused: dict[str, Any], status: int) -> str:
    return f"{refused['error']} (HTTP {status}): {refused['message']}"


def run_with_client(client_args: tuple[str, str | None, str | None, float], work: Any) -> None:
    """Run `work` with a client of the agent's HTTP API; a refusal is one line and exit 1."""
    try:
        work(TenancyClient(*client_args))
    except CommandError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@orgs.command("create")
def create_org(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and dashes.")],
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Create an org."""
    run_with_client(
        (http, key, secret, timeout_s),
        lambda client: say(
            f"created org {client.call('POST', '/api/v1/orgs', {'name': name})['name']}"
        ),
    )


@orgs.command("list")
def list_orgs(
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """List the orgs you manage."""

    def work(client: TenancyClient) -> None:
        rows = [
            {"org": org["name"], "created": _when(org["created_ms"])}
            for org in client.call("GET", "/api/v1/orgs")
        ]
        show_rows(rows, ["org", "created"], output)

    run_with_client((http, key, secret, timeout_s), work)


@orgs.command("delete")
def delete_org(
    name: Annotated[str, typer.Argument(help="The org to delete, with its keys and ACLs.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Delete an org (not `default`)."""
    if not yes:
        typer.confirm(f"Delete org {name!r} with its keys, ACLs and quotas?", abort=True)
    run_with_client(
        (http, key, secret, timeout_s),
        lambda client: say(
            f"deleted org {client.call('DELETE', f'/api/v1/orgs/{name}')['deleted']}"
        ),
    )


@keys.command("create")
def create_key(
    org: Annotated[str, typer.Option("--org", help="The org the key belongs to.")],
    role: Annotated[str, typer.Option("--role", help="member or admin.")] = "member",
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Issue a key; its secret is shown now and never again."""

    def work(client: TenancyClient) -> None:
        issued = client.call("POST", f"/api/v1/orgs/{org}/keys", {"role": role})
        if output is Output.JSON:
            print_json({"key": issued["key"], "secret": issued["secret"]})
            return
        say(f"key    {issued['key']}\nsecret {issued['secret']}")
        say("[yellow]Keep the secret now: it is not shown again.[/yellow]")

    run_with_client((http, key, secret, timeout_s), work)


@keys.command("list")
def list_keys(
    org: Annotated[str, typer.Option("--org", help="The org whose keys to list.")],
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """List an org's keys (never their secrets)."""

    def work(client: TenancyClient) -> None:
        rows = [
            {
                "key": listed["key"],
                "role": listed["role"],
                "created": _when(listed["created_ms"]),
                "revoked": _when(listed["revoked_ms"]),
            }
            for listed in client.call("GET", f"/api/v1/orgs/{org}/keys")
        ]
        show_rows(rows, ["key", "role", "created", "revoked"], output)

    run_with_client((http, key, secret, timeout_s), work)


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(metavar="KEY", help="The key id to revoke.")],
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Revoke a key: it authenticates no more, on any door."""
    run_with_client(
        (http, key, secret, timeout_s),
        lambda client: say(f"revoked {client.call('DELETE', f'/api/v1/keys/{key_id}')['revoked']}"),
    )
