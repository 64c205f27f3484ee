"""S3 object store: the ObjectStore port over boto3, with S3 failures mapped to port errors."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from contextlib import closing, suppress
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from streamhouse.config import Settings
from streamhouse.errors import ObjectNotFound, ObjectStoreUnavailable
from streamhouse.ports.object_store import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectTypeDef

_P = ParamSpec("_P")
S3_LIST_KEYS_MAX = 1000  # the most keys one ListObjectsV2 answer holds
_T = TypeVar("_T")

# Error codes meaning "no such object". NoSuchBucket is deliberately absent: a missing
# bucket is a configuration problem, and reporting it as a missing object would make
# callers conclude that data was lost.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# What an operator should do about the S3 errors that a retry will not fix.
_HINTS = {
    "NoSuchBucket": "the bucket does not exist: create it or fix object_store_url",
    "AccessDenied": "check the credentials and the bucket policy",
    "403": "access denied: check the credentials and the bucket policy",
    "InvalidAccessKeyId": "check the access key id",
    "SignatureDoesNotMatch": "check the secret access key and the region",
    "AuthorizationHeaderMalformed": "check the region",
    "PermanentRedirect": "the bucket is in another region: fix the region",
    "EntityTooSmall": "s3_part_bytes must be at least 5 MiB",
    "SlowDown": "S3 is throttling requests; the request can be retried",
}


class _RangeNotSatisfiable(Exception):
    """S3 answered 416: the range starts at or past the object's end (or it is empty)."""


class S3ObjectStore(ObjectStore):
    """Objects under `prefix` in an S3 (or S3-compatible) bucket.

    A non-empty prefix acts as a folder: "cluster1" stores key "a.obj" as "cluster1/a.obj".
    Blocking boto3 calls run in threads (boto3 clients are thread-safe).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        settings: Settings,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name must not be empty")
        self.bucket = bucket
        self.prefix = _folder(prefix)
        self.region = region
        self.endpoint_url = endpoint_url
        self._settings = settings
        self._client = _make_client(
            settings, endpoint_url, region, access_key_id, secret_access_key
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: Settings,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> S3ObjectStore:
        """A store for "s3://bucket" or "s3://bucket/some/prefix"."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"object store URL {url!r} must look like s3://bucket/optional/prefix")
        return cls(
            parts.netloc,
            parts.path,
            endpoint_url,
            region,
            access_key_id,
            secret_access_key,
            settings=settings,
        )

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (first start, tests)."""
        await asyncio.to_thread(self._call, "", self._ensure_bucket_sync)

    async def put(self, key: str, data: bytes) -> None:
        data = bytes(data)
        if len(data) >= self._settings.s3_multipart_threshold_bytes:
            await asyncio.to_thread(self._call, key, self._put_multipart_sync, key, data)
        else:
            await asyncio.to_thread(self._call, key, self._put_single_sync, key, data)

    async def get(self, key: str) -> bytes:
        body, _ = await asyncio.to_thread(self._call, key, self._get_sync, key, None)
        return body

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        _check_range(start, length)
        # A zero-length range cannot be written as a Range header; read one byte instead
        # so that a missing object still raises ObjectNotFound.
        last = start + max(length, 1) - 1
        try:
            body, total = await asyncio.to_thread(
                self._call, key, self._get_sync, key, f"bytes={start}-{last}"
            )
        except _RangeNotSatisfiable:
            return b""
        if total is None:
            # The server ignored the Range header and sent the whole object.
            body = body[start:]
        return body[:length]

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        _check_range(0, length)
        # "bytes=-0" is not a valid range; for length 0 read the first byte to learn the size.
        range_header = f"bytes=-{length}" if length > 0 else "bytes=0-0"
        try:
            body, total = await asyncio.to_thread(
                self._call, key, self._get_sync, key, range_header
            )
        except _RangeNotSatisfiable:
            # Only an empty object cannot satisfy a suffix range; read it whole to be sure.
            body, total = await asyncio.to_thread(self._call, key, self._get_sync, key, None)
        if total is None:
            total = len(body)
        return _tail(body, length), total

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        infos = await asyncio.to_thread(self._call, prefix, self._list_sync, prefix)
        return sorted(infos, key=lambda info: info.key)

    async def list_page(
        self, prefix: str, start_after: str = "", limit: int = 1000
    ) -> builtins.list[ObjectInfo]:
        if limit < 0:
            raise ValueError(f"a listing page holds at least 0 objects, got a limit of {limit}")
        return await asyncio.to_thread(
            self._call, prefix, self._list_page_sync, prefix, start_after, limit
        )

    async def delete(self, key: str) -> None:
        # S3 answers 204 whether or not the key exists, which is the idempotence we need.
        await asyncio.to_thread(
            self._call, key, self._client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def _full(self, key: str) -> str:
        if not key:
            raise ValueError("object key must not be empty")
        return self.prefix + key

    def _call(self, key: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run one S3 operation, turning S3 and network failures into the port's errors."""
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            raise self._map_client_error(key, exc) from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(
                f"S3 request for s3://{self.bucket}/{self.prefix}{key} failed: {exc}; "
                f"check that the endpoint ({self.endpoint_url or 'AWS'}) is reachable "
                "and that credentials are configured"
            ) from exc

    def _map_client_error(self, key: str, exc: ClientError) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(f"no object at {where} (S3 {code})")
        if code == "InvalidRange" or status == 416:
            return _RangeNotSatisfiable(where)
        hint = _HINTS.get(code) or (
            "S3 failed server-side; the request can be retried"
            if status >= 500
            else "the request was rejected"
        )
        return ObjectStoreUnavailable(f"S3 error {code} (HTTP {status}) at {where}: {hint}")

    def _ensure_bucket_sync(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        if self.region == "us-east-1":
            # us-east-1 rejects an explicit LocationConstraint naming itself.
            self._client.create_bucket(Bucket=self.bucket)
        else:
            self._client.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={
                    "LocationConstraint": cast("BucketLocationConstraintType", self.region)
                },
            )

    def _put_single_sync(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def _put_multipart_sync(self, key: str, data: bytes) -> None:
        full_key = self._full(key)
        upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full_key)[
            "UploadId"
        ]
        try:
            parts = self._upload_parts_sync(full_key, upload_id, data)
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self._abort_quietly(full_key, upload_id)
            raise

    def _upload_parts_sync(
        self, full_key: str, upload_id: str, data: bytes
    ) -> builtins.list[CompletedPartTypeDef]:
        parts: builtins.list[CompletedPartTypeDef] = []
        for number, offset in enumerate(range(0, len(data), self._settings.s3_part_bytes), 1):
            chunk = data[offset : offset + self._settings.s3_part_bytes]
            response = self._client.upload_part(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        return parts

    def _abort_quietly(self, full_key: str, upload_id: str) -> None:
        """Best effort: the original error matters more, and a bucket lifecycle rule for
        incomplete multipart uploads cleans up whatever an abort fails to remove."""
        with suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id
            )

    def _get_sync(self, key: str, range_header: str | None) -> tuple[bytes, int | None]:
        """The body and, for a ranged answer, the total size from Content-Range."""
        if range_header is None:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        else:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._full(key), Range=range_header
            )
        with closing(response["Body"]) as body:
            data = body.read()
        return data, _total_size(response.get("ContentRange"))

    def _list_sync(self, prefix: str) -> builtins.list[ObjectInfo]:
        infos: builtins.list[ObjectInfo] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            infos += [self._info(item) for item in page.get("Contents", [])]
        return infos

    def _list_page_sync(
        self, prefix: str, start_after: str, limit: int
    ) -> builtins.list[ObjectInfo]:
        """ListObjectsV2 from StartAfter, continued until `limit` keys or the listing's end
        (S3 answers at most 1000 keys a request, and may answer fewer)."""
        page: builtins.list[ObjectInfo] = []
        token = ""
        while len(page) < limit:
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": self.prefix + prefix,
                "MaxKeys": min(limit - len(page), S3_LIST_KEYS_MAX),
            }
            if token:
                args["ContinuationToken"] = token
            elif start_after:
                args["StartAfter"] = self.prefix + start_after
            answer = self._client.list_objects_v2(**args)
            page += [self._info(item) for item in answer.get("Contents", [])]
            token = answer.get("NextContinuationToken", "")
            if not answer.get("IsTruncated") or not token:
                break
        return page[:limit]

    def _info(self, item: ObjectTypeDef) -> ObjectInfo:
        full_key = item.get("Key", "")
        modified = item.get("LastModified")
        modified_ms = int(modified.timestamp() * 1000) if modified is not None else 0
        return ObjectInfo(full_key[len(self.prefix) :], item.get("Size", 0), modified_ms)


def _make_client(
    settings: Settings,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> S3Client:
    timeout_s = settings.s3_timeout_ms / 1000
    config = Config(
        region_name=region,
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": settings.s3_attempts_max},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    # A private session: the default session is shared module state and not thread-safe.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


def _folder(prefix: str) -> str:
    """ "a/b" and "/a/b/" both become "a/b/"; "" stays ""."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def _check_range(start: int, length: int) -> None:
    if start < 0 or length < 0:
        raise ValueError(f"byte range needs start >= 0 and length >= 0, got {start}, {length}")


def _tail(data: bytes, length: int) -> bytes:
    """The last `length` bytes (a plain data[-length:] is wrong for length 0)."""
    return data[max(0, len(data) - length) :] if length > 0 else b""


def _total_size(content_range: str | None) -> int | None:
    """The total from "bytes 0-9/10"; None when absent or unknown ("*")."""
    if not content_range:
        return None
    total = content_range.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None
