"""`streamctl schemas`: list, get, register, check and delete schemas; compatibility and mode.

These talk to a running agent's schema registry door over Confluent's REST API (the same calls
Confluent's clients make), so they work against any agent of the cluster, and against any
Confluent-compatible registry. An agent requiring keys is given one as HTTP Basic credentials
(`--key/--secret`, or `STREAMHOUSE_KEY`/`STREAMHOUSE_SECRET`): the subjects are that key's org's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from streamhouse.cli.agent_client import (
    DEFAULT_TIMEOUT_S,
    EXIT_FAILED,
    CommandError,
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

DEFAULT_REGISTRY = "http://127.0.0.1:8081"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")

schemas = typer.Typer(
    help="Manage schemas in a running agent's schema registry (Confluent's REST API).",
    no_args_is_help=True,
)

Registry = Annotated[
    str,
    typer.Option(
        "--registry",
        "-r",
        envvar="STREAMHOUSE_REGISTRY",
        help="Base URL of the schema registry (an agent's --schema-registry-port).",
    ),
]
Subject = Annotated[str, typer.Argument(help="The subject, e.g. orders-value.")]
SchemaFile = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, help="File holding the schema text."),
]
SchemaTypeOption = Annotated[
    str,
    typer.Option("--type", "-t", help="AVRO, JSON or PROTOBUF (default: from the extension)."),
]
References = Annotated[
    list[str] | None,
    typer.Option(
        "--reference",
        help="A reference NAME=SUBJECT:VERSION (repeat for several).",
    ),
]
Version = Annotated[str, typer.Option("--version", "-v", help="A version number or latest.")]


class RegistryClient:
    """JSON calls to one registry; a refusal or no answer is a CommandError."""

    def __init__(self, base: str, key: str | None, secret: str | None, timeout_s: float) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.credentials = key_headers(key, secret)

    def call(self, method: str, path: str, body: Any = None, **query: str | bool | None) -> Any:
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
        encoded = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = self.base + path + ("?" + encoded if encoded else "")
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE, **self.credentials}
        unreachable = (
            f"cannot reach a schema registry at {self.base}. Is `streamhouse agent` running "
            "with its registry on? Set --registry or STREAMHOUSE_REGISTRY."
        )
        return call_json_api(method, url, body, headers, self.timeout_s, _refusal, unreachable)


def _refusal(refused: dict[str, Any], _status: int) -> str:
    return f"error {refused['error_code']}: {refused['message']}"


def _quoted(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _run(client_args: tuple[str, str | None, str | None, float], work: Any) -> None:
    try:
        work(RegistryClient(*client_args))
    except CommandError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc


def _schema_body(file: Path, schema_type: str, references: list[str] | None) -> dict[str, Any]:
    kind = (schema_type or _type_from_extension(file)).upper()
    if kind not in SCHEMA_TYPES:
        raise CommandError(f"--type {schema_type!r} is not one of {', '.join(SCHEMA_TYPES)}")
    body: dict[str, Any] = {"schema": file.read_text(), "schemaType": kind}
    if references:
        body["references"] = [_reference(text) for text in references]
    return body


def _type_from_extension(file: Path) -> str:
    return {".proto": "PROTOBUF", ".json": "JSON"}.get(file.suffix.lower(), "AVRO")


def _reference(text: str) -> dict[str, Any]:
    name, _, target = text.partition("=")
    subject, _, version = target.rpartition(":")
    if not name or not subject or not version.lstrip("-").isdigit():
        raise CommandError(f"--reference {text!r} is not NAME=SUBJECT:VERSION")
    return {"name": name, "subject": subject, "version": int(version)}


@schemas.command("list")
def list_subjects(
    prefix: Annotated[str, typer.Option("--prefix", help="Only subjects starting so.")] = "",
    deleted: Annotated[bool, typer.Option("--deleted", help="Soft-deleted ones too.")] = False,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """List subjects with their latest version, its schema id and type."""

    def work(client: RegistryClient) -> None:
        rows = []
        for subject in client.call("GET", "/subjects", subjectPrefix=prefix, deleted=deleted):
            path = f"/subjects/{_quoted(subject)}/versions/latest"
            latest = client.call("GET", path, deleted=deleted)
            versions = client.call("GET", f"/subjects/{_quoted(subject)}/versions", deleted=deleted)
            rows.append(
                {
                    "subject": subject,
                    "versions": len(versions),
                    "latest version": latest["version"],
                    "id": latest["id"],
                    "type": latest.get("schemaType", "AVRO"),
                }
            )
        show_rows(rows, ["subject", "versions", "latest version", "id", "type"], output)

    _run((registry, key, secret, timeout_s), work)


@schemas.command("get")
def get_schema(
    subject: Annotated[str | None, typer.Argument(help="The subject (or give --id).")] = None,
    version: Version = "latest",
    schema_id: Annotated[int | None, typer.Option("--id", help="A global schema id.")] = None,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Show one schema: a subject's version (latest by default) or a global id."""

    def work(client: RegistryClient) -> None:
        if schema_id is not None:
            found = {"id": schema_id, **client.call("GET", f"/schemas/ids/{schema_id}")}
        elif subject is not None:
            found = client.call("GET", f"/subjects/{_quoted(subject)}/versions/{version}")
        else:
            raise CommandError("name a SUBJECT or give --id")
        if output is Output.JSON:
            print_json(found)
            return
        heading = ", ".join(
            f"{key} {found[key]}" for key in ("subject", "version", "id") if key in found
        )
        say(f"[bold]{heading}[/bold] ({found.get('schemaType', 'AVRO')})")
        say(_pretty(found["schema"]))

    _run((registry, key, secret, timeout_s), work)


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


@schemas.command("register")
def register(
    subject: Subject,
    file: SchemaFile,
    schema_type: SchemaTypeOption = "",
    reference: References = None,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Register the schema in FILE under SUBJECT (checked against its compatibility level)."""

    def work(client: RegistryClient) -> None:
        body = _schema_body(file, schema_type, reference)
        registered = client.call("POST", f"/subjects/{_quoted(subject)}/versions", body)
        found = client.call("POST", f"/subjects/{_quoted(subject)}", body)
        answer = {"subject": subject, "id": registered["id"], "version": found["version"]}
        if output is Output.JSON:
            print_json(answer)
        else:
            say(f"registered {subject} version {answer['version']} as schema id {answer['id']}")

    _run((registry, key, secret, timeout_s), work)


@schemas.command("check")
def check(
    subject: Subject,
    file: SchemaFile,
    schema_type: SchemaTypeOption = "",
    reference: References = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Only against this version.")
    ] = None,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Whether FILE could be registered under SUBJECT; exit 1 (with the reasons) if not."""

    def work(client: RegistryClient) -> None:
        body = _schema_body(file, schema_type, reference)
        path = f"/compatibility/subjects/{_quoted(subject)}/versions"
        path += f"/{version}" if version else ""
        verdict = client.call("POST", path, body, verbose=True)
        if output is Output.JSON:
            print_json(verdict)
        elif verdict["is_compatible"]:
            say(f"[green]compatible[/green] with {subject}")
        else:
            say(f"[red]incompatible[/red] with {subject}:")
            for message in verdict.get("messages", []):
                say(f"  - {message}")
        if not verdict["is_compatible"]:
            raise typer.Exit(EXIT_FAILED)

    _run((registry, key, secret, timeout_s), work)


@schemas.command("delete")
def delete(
    subject: Subject,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="One version (default: all).")
    ] = None,
    permanent: Annotated[
        bool, typer.Option("--permanent", help="Remove for good (after a soft delete).")
    ] = False,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Delete a subject's versions: soft (hidden, ids kept), then --permanent."""

    def work(client: RegistryClient) -> None:
        path = f"/subjects/{_quoted(subject)}"
        path += f"/versions/{version}" if version else ""
        deleted = client.call("DELETE", path, permanent=permanent)
        versions = deleted if isinstance(deleted, list) else [deleted]
        if output is Output.JSON:
            print_json({"subject": subject, "versions": versions, "permanent": permanent})
        else:
            how = "permanently deleted" if permanent else "soft-deleted"
            say(f"{how} {subject} version(s) {', '.join(map(str, versions))}")

    _run((registry, key, secret, timeout_s), work)


@schemas.command("config")
def config(
    subject: Annotated[str | None, typer.Argument(help="A subject (default: global).")] = None,
    set_level: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="BACKWARD, FORWARD, FULL, their _TRANSITIVE forms, or NONE.",
        ),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="Set READWRITE, READONLY or IMPORT.")
    ] = None,
    registry: Registry = DEFAULT_REGISTRY,
    key: Key = None,
    secret: Secret = None,
    output: OutputFormat = Output.TABLE,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Show or set the compatibility level and mode, of a subject or the whole registry."""

    def work(client: RegistryClient) -> None:
        suffix = f"/{_quoted(subject)}" if subject else ""
        if set_level:
            client.call("PUT", "/config" + suffix, {"compatibility": set_level.upper()})
        if mode:
            client.call("PUT", "/mode" + suffix, {"mode": mode.upper()})
        default = True if subject else None
        level = client.call("GET", "/config" + suffix, defaultToGlobal=default)
        current = client.call("GET", "/mode" + suffix, defaultToGlobal=default)
        row = {
            "scope": subject or "global",
            "compatibility": level["compatibilityLevel"],
            "mode": current["mode"],
        }
        show_rows([row], ["scope", "compatibility", "mode"], output)

    _run((registry, key, secret, timeout_s), work)
