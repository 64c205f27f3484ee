"""Options shared by `streamhouse` and `streamctl`, each with its environment variable."""

from __future__ import annotations

from typing import Annotated

import typer

DataDir = Annotated[
    str,
    typer.Option(
        "--data-dir", envvar="STREAMHOUSE_DATA_DIR", help="Where the WAL and defaults live."
    ),
]
MetadataUrl = Annotated[
    str,
    typer.Option(
        "--metadata-url",
        envvar="STREAMHOUSE_METADATA_URL",
        help="sqlite:///path or postgresql://user@host/db; default: SQLite in the data dir.",
    ),
]
ObjectStoreUrl = Annotated[
    str,
    typer.Option(
        "--object-store",
        envvar="STREAMHOUSE_OBJECT_STORE",
        help="s3://bucket/prefix or a directory; default: objects/ in the data dir.",
    ),
]
S3Endpoint = Annotated[
    str,
    typer.Option(
        "--s3-endpoint",
        envvar="STREAMHOUSE_S3_ENDPOINT",
        help="Endpoint URL of an S3-compatible store (MinIO, moto); credentials from AWS_* vars.",
    ),
]
