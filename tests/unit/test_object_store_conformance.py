"""ObjectStore conformance: one suite that the local, S3 (moto) and simulated stores all pass."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import boto3
import pytest

from sim.clock import VirtualClock
from sim.object_store import ObjectStoreFaults, SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import MIB, Settings
from streamhouse.errors import ObjectNotFound, ObjectStoreUnavailable
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.s3_object_store import S3ObjectStore
from streamhouse.ports.object_store import ObjectInfo, ObjectStore
from streamhouse.testing.moto_server import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY
from streamhouse.testing.network import free_loopback_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_P = ParamSpec("_P")

# 5 MiB is S3's smallest allowed part; ~11 MiB then makes three parts, the last one short.
SMALL_MULTIPART = Settings(s3_multipart_threshold_bytes=5 * MIB, s3_part_bytes=5 * MIB)
LARGE_OBJECT_BYTES = 11 * MIB + 123


def run_async(test: Callable[_P, Coroutine[Any, Any, None]]) -> Callable[_P, None]:
    """Run an async test body on a fresh event loop (the project does not use pytest-asyncio)."""

    @functools.wraps(test)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def _s3_store(endpoint_url: str, settings: Settings = SMALL_MULTIPART) -> S3ObjectStore:
    bucket = f"conformance-{uuid.uuid4().hex[:16]}"
    store = S3ObjectStore(
        bucket,
        prefix="cluster",
        endpoint_url=endpoint_url,
        access_key_id=DUMMY_ACCESS_KEY_ID,
        secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        settings=settings,
    )
    asyncio.run(store.ensure_bucket())
    return store


@pytest.fixture(params=["local", "s3", "sim"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Each adapter, empty. S3 gets a fresh bucket per test on the shared moto server."""
    if request.param == "local":
        yield LocalObjectStore(str(tmp_path / "objects"))
    elif request.param == "s3":
        # Looked up lazily so that `-k local` runs do not start moto.
        yield _s3_store(request.getfixturevalue("moto_s3_endpoint"))
    else:
        yield SimObjectStore(None, SeededRng(7), ObjectStoreFaults())


def _sizes(infos: list[ObjectInfo]) -> list[tuple[str, int]]:
    return [(info.key, info.size_bytes) for info in infos]


async def _all_pages(store: ObjectStore, prefix: str, limit: int) -> list[list[str]]:
    """Every page of a paged listing, each as its keys."""
    pages: list[list[str]] = []
    start_after = ""
    while True:
        page = await store.list_page(prefix, start_after, limit)
        assert len(page) <= limit
        pages.append([info.key for info in page])
        if len(page) < limit:
            return pages
        start_after = page[-1].key


# --- the conformance suite ------------------------------------------------------------


@run_async
async def test_put_get_round_trip(store: ObjectStore) -> None:
    binary = bytes(range(256)) * 3
    await store.put("a/one.obj", b"hello")
    await store.put("a/empty.obj", b"")
    await store.put("a/binary.obj", binary)
    assert await store.get("a/one.obj") == b"hello"
    assert await store.get("a/empty.obj") == b""
    assert await store.get("a/binary.obj") == binary


@run_async
async def test_put_replaces(store: ObjectStore) -> None:
    await store.put("k.obj", b"first version, longer")
    await store.put("k.obj", b"second")
    assert await store.get("k.obj") == b"second"
    assert _sizes(await store.list()) == [("k.obj", 6)]


@run_async
async def test_missing_key_is_not_found(store: ObjectStore) -> None:
    await store.put("present/x.obj", b"x")
    for key in ("absent.obj", "present/y.obj", "present"):
        with pytest.raises(ObjectNotFound):
            await store.get(key)
        with pytest.raises(ObjectNotFound):
            await store.get_range(key, 0, 10)
        with pytest.raises(ObjectNotFound):
            await store.get_range(key, 0, 0)
        with pytest.raises(ObjectNotFound):
            await store.get_suffix(key, 4)


@run_async
async def test_get_range(store: ObjectStore) -> None:
    await store.put("r.obj", b"0123456789")
    assert await store.get_range("r.obj", 0, 3) == b"012"
    assert await store.get_range("r.obj", 4, 3) == b"456"
    assert await store.get_range("r.obj", 7, 3) == b"789"  # exactly at the end
    assert await store.get_range("r.obj", 8, 5) == b"89"  # runs past the end: shorter
    assert await store.get_range("r.obj", 10, 5) == b""  # starts at the end
    assert await store.get_range("r.obj", 50, 5) == b""  # starts past the end
    assert await store.get_range("r.obj", 3, 0) == b""


@run_async
async def test_get_range_of_empty_object(store: ObjectStore) -> None:
    await store.put("empty.obj", b"")
    assert await store.get_range("empty.obj", 0, 4) == b""


@run_async
async def test_get_suffix(store: ObjectStore) -> None:
    await store.put("s.obj", b"0123456789")
    assert await store.get_suffix("s.obj", 4) == (b"6789", 10)
    assert await store.get_suffix("s.obj", 10) == (b"0123456789", 10)
    assert await store.get_suffix("s.obj", 15) == (b"0123456789", 10)  # larger than the object
    assert await store.get_suffix("s.obj", 64) == (b"0123456789", 10)
    assert await store.get_suffix("s.obj", 0) == (b"", 10)


@run_async
async def test_get_suffix_of_empty_object(store: ObjectStore) -> None:
    await store.put("empty.obj", b"")
    assert await store.get_suffix("empty.obj", 8) == (b"", 0)
    assert await store.get_suffix("empty.obj", 0) == (b"", 0)


@run_async
async def test_list_sorted_with_prefix(store: ObjectStore) -> None:
    keys = ["b/2.obj", "a/x/deep/1.obj", "a/2.obj", "a/10.obj", "ab.obj", "c.obj"]
    for index, key in enumerate(keys):
        await store.put(key, b"x" * index)
    listed = await store.list()
    assert [info.key for info in listed] == sorted(keys)
    assert {info.key: info.size_bytes for info in listed} == {
        key: index for index, key in enumerate(keys)
    }
    assert [info.key for info in await store.list("a/")] == [
        "a/10.obj",
        "a/2.obj",
        "a/x/deep/1.obj",
    ]
    assert [info.key for info in await store.list("a")] == [
        "a/10.obj",
        "a/2.obj",
        "a/x/deep/1.obj",
        "ab.obj",
    ]
    assert [info.key for info in await store.list("a/x/de")] == ["a/x/deep/1.obj"]
    assert await store.list("zzz/") == []


@run_async
async def test_list_of_empty_store(store: ObjectStore) -> None:
    assert await store.list() == []
    assert await store.list_page("") == []
    assert await store.list_page("orgs/", "orgs/a", 3) == []


# "a-b.obj" sorts before "a/…" ('-' < '/'): a walk that visits directory "a" before file
# "a-b.obj" by name alone would list out of key order.
PAGED_KEYS = [
    "a-b.obj",
    "a/1.obj",
    "a/2.obj",
    "a/x/deep/1.obj",
    "a/x/deep/2.obj",
    "a/y.obj",
    "a0.obj",
    "b/1.obj",
    "orgs/o/objects/20260101/x.obj",
]


@run_async
async def test_list_page_walks_keys_in_order(store: ObjectStore) -> None:
    for index, key in enumerate(reversed(PAGED_KEYS)):
        await store.put(key, b"x" * index)
    listed = await store.list()
    assert [info.key for info in listed] == PAGED_KEYS
    for limit in (1, 2, 3, 1000):
        pages = await _all_pages(store, "", limit)
        assert [key for page in pages for key in page] == PAGED_KEYS, limit
        assert all(len(page) == limit for page in pages[:-1])
    assert await store.list_page("", "", 1000) == listed  # sizes and times as list() says


@run_async
async def test_list_page_with_prefix_and_start_after(store: ObjectStore) -> None:
    for key in PAGED_KEYS:
        await store.put(key, b"v")
    assert [i.key for i in await store.list_page("a/", "", 2)] == ["a/1.obj", "a/2.obj"]
    assert [i.key for i in await store.list_page("a/", "a/2.obj", 2)] == [
        "a/x/deep/1.obj",
        "a/x/deep/2.obj",
    ]
    assert [i.key for i in await store.list_page("a/", "a/x/deep/1.obj", 10)] == [
        "a/x/deep/2.obj",
        "a/y.obj",
    ]
    # start_after need not be a key, and may sort before the prefix
    assert [i.key for i in await store.list_page("a/x/", "a/x/deep/", 10)] == [
        "a/x/deep/1.obj",
        "a/x/deep/2.obj",
    ]
    assert [i.key for i in await store.list_page("a/", "", 10)][:1] == ["a/1.obj"]
    assert [i.key for i in await store.list_page("b", "a", 10)] == ["b/1.obj"]
    assert await store.list_page("a/", "a/y.obj", 10) == []
    assert await store.list_page("a/", "z", 10) == []
    assert await store.list_page("", "", 0) == []
    assert [i.key for i in await store.list_page("orgs/", "", 10)] == [PAGED_KEYS[-1]]


@run_async
async def test_listed_modified_time_is_the_stores(store: ObjectStore) -> None:
    await store.put("t/first.obj", b"1")
    await store.put("t/second.obj", b"2")
    first, second = await store.list_page("t/")
    assert 0 <= first.modified_ms <= second.modified_ms + 1000  # S3 keeps whole seconds
    assert [info.modified_ms for info in await store.list("t/")] == [
        first.modified_ms,
        second.modified_ms,
    ]
    if not isinstance(store, SimObjectStore):  # the sim store here runs without a clock
        assert abs(first.modified_ms - time.time() * 1000) < 600_000


@run_async
async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put("d/gone.obj", b"bye")
    await store.put("d/kept.obj", b"stay")
    await store.delete("d/gone.obj")
    await store.delete("d/gone.obj")
    await store.delete("never/existed.obj")
    with pytest.raises(ObjectNotFound):
        await store.get("d/gone.obj")
    assert _sizes(await store.list()) == [("d/kept.obj", 4)]


@run_async
async def test_large_put_over_multipart_threshold(store: ObjectStore) -> None:
    # A non-repeating pattern so that a misplaced or duplicated part cannot go unnoticed.
    data = SeededRng(11).randbytes(LARGE_OBJECT_BYTES)
    await store.put("big.obj", data)
    assert await store.get("big.obj") == data
    assert await store.get_suffix("big.obj", 100) == (data[-100:], LARGE_OBJECT_BYTES)
    middle = 5 * MIB - 10  # straddles the first part boundary
    assert await store.get_range("big.obj", middle, 20) == data[middle : middle + 20]
    assert _sizes(await store.list()) == [("big.obj", LARGE_OBJECT_BYTES)]


# --- adapter-specific tests -----------------------------------------------------------


@run_async
async def test_sim_unavailable_raises_and_stores_nothing() -> None:
    store = SimObjectStore(None, SeededRng(1), ObjectStoreFaults(unavailable_rate=1.0))
    with pytest.raises(ObjectStoreUnavailable):
        await store.put("k.obj", b"data")
    with pytest.raises(ObjectStoreUnavailable):
        await store.get("k.obj")
    with pytest.raises(ObjectStoreUnavailable):
        await store.list()
    with pytest.raises(ObjectStoreUnavailable):
        await store.delete("k.obj")
    assert store.stored_keys() == []
    assert (store.puts, store.gets, store.lists, store.deletes) == (1, 1, 1, 1)


async def _unknown_outcome_run(seed: int) -> list[bool]:
    """Which of 64 unknown-outcome puts (all of which raise) actually stored their object."""
    store = SimObjectStore(None, SeededRng(seed), ObjectStoreFaults(put_unknown_outcome_rate=1.0))
    for index in range(64):
        with pytest.raises(ObjectStoreUnavailable):
            await store.put(f"k{index:02}.obj", b"v")
    return [store.peek(f"k{index:02}.obj") is not None for index in range(64)]


@run_async
async def test_sim_unknown_outcome_puts_sometimes_store() -> None:
    stored = await _unknown_outcome_run(seed=3)
    assert any(stored)
    assert not all(stored)
    assert await _unknown_outcome_run(seed=3) == stored
    assert await _unknown_outcome_run(seed=4) != stored


async def _fault_trace(seed: int) -> list[str]:
    faults = ObjectStoreFaults(unavailable_rate=0.3, put_unknown_outcome_rate=0.3)
    store = SimObjectStore(None, SeededRng(seed), faults)
    trace: list[str] = []
    for index in range(50):
        try:
            await store.put(f"k{index}", b"v")
            trace.append("ok")
        except ObjectStoreUnavailable as exc:
            trace.append(str(exc))
    trace.append(",".join(store.stored_keys()))
    return trace


@run_async
async def test_sim_same_seed_same_faults() -> None:
    assert await _fault_trace(21) == await _fault_trace(21)
    assert await _fault_trace(21) != await _fault_trace(22)


@run_async
async def test_sim_latency_waits_for_the_virtual_clock() -> None:
    clock = VirtualClock()
    store = SimObjectStore(clock, SeededRng(5), ObjectStoreFaults(latency_ms_max=100))
    put = asyncio.create_task(store.put("k.obj", b"v"))
    await asyncio.sleep(0)
    for _ in range(100):
        if put.done():
            break
        clock.advance_ms(1)
        await asyncio.sleep(0)
    await put
    assert clock.monotonic_ms() <= 100
    assert store.peek("k.obj") == b"v"


@run_async
async def test_sim_modified_time_is_virtual_time_at_put() -> None:
    clock = VirtualClock()
    store = SimObjectStore(clock, SeededRng(5))
    clock.advance_ms(1234)
    await store.put("k.obj", b"v")
    clock.advance_ms(10)
    assert [info.modified_ms for info in await store.list_page("")] == [clock.now_ms() - 10]


@run_async
async def test_sim_unavailable_fails_a_page_like_a_listing() -> None:
    store = SimObjectStore(None, SeededRng(1), ObjectStoreFaults(unavailable_rate=1.0))
    with pytest.raises(ObjectStoreUnavailable):
        await store.list_page("", "", 10)
    assert store.lists == 1


def test_sim_faults_reject_nonsense() -> None:
    with pytest.raises(AssertionError):
        ObjectStoreFaults(unavailable_rate=1.5)
    with pytest.raises(AssertionError):
        ObjectStoreFaults(latency_ms_max=-1)


@run_async
async def test_s3_outage_is_unavailable() -> None:
    settings = Settings(s3_attempts_max=1, s3_timeout_ms=500)
    # Nothing listens on a port we just released, so every connection is refused.
    store = S3ObjectStore(
        "outage-bucket",
        endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
        access_key_id=DUMMY_ACCESS_KEY_ID,
        secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        settings=settings,
    )
    with pytest.raises(ObjectStoreUnavailable, match="outage-bucket"):
        await store.put("k.obj", b"data")
    with pytest.raises(ObjectStoreUnavailable):
        await store.get("k.obj")
    with pytest.raises(ObjectStoreUnavailable):
        await store.list()


def test_s3_missing_bucket_is_unavailable_not_not_found(moto_s3_endpoint: str) -> None:
    store = S3ObjectStore(
        f"missing-{uuid.uuid4().hex[:12]}",
        endpoint_url=moto_s3_endpoint,
        access_key_id=DUMMY_ACCESS_KEY_ID,
        secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        settings=Settings(),
    )
    # A missing bucket must not look like a missing object: callers would conclude data loss.
    with pytest.raises(ObjectStoreUnavailable, match="NoSuchBucket"):
        asyncio.run(store.get("k.obj"))


def test_s3_prefix_isolates_stores(moto_s3_endpoint: str) -> None:
    first = _s3_store(moto_s3_endpoint)
    second = S3ObjectStore.from_url(
        f"s3://{first.bucket}/other/",
        Settings(),
        endpoint_url=moto_s3_endpoint,
        access_key_id=DUMMY_ACCESS_KEY_ID,
        secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    asyncio.run(first.put("k.obj", b"first"))
    asyncio.run(second.put("k.obj", b"second"))
    assert asyncio.run(first.get("k.obj")) == b"first"
    assert _sizes(asyncio.run(second.list())) == [("k.obj", 6)]


def test_s3_from_url_parses_bucket_and_prefix() -> None:
    store = S3ObjectStore.from_url(
        "s3://my-bucket/a/b", Settings(), endpoint_url="http://127.0.0.1:1"
    )
    assert (store.bucket, store.prefix) == ("my-bucket", "a/b/")
    assert S3ObjectStore.from_url("s3://my-bucket", Settings()).prefix == ""
    for bad in ("http://bucket/x", "s3:///x", "s3://bucket/x?y=1"):
        with pytest.raises(ValueError):
            S3ObjectStore.from_url(bad, Settings())


@pytest.mark.parametrize("key", ["../escape.obj", "a/../../escape.obj", "/abs.obj", "a//b", ""])
def test_local_rejects_escaping_keys(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(str(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(store.put(key, b"x"))
    with pytest.raises(ValueError):
        asyncio.run(store.get(key))
    assert list(tmp_path.parent.glob("escape.obj")) == []


def test_local_list_skips_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    asyncio.run(store.put("a/k.obj", b"x"))
    # What a put interrupted before its rename leaves behind.
    (tmp_path / "a" / ".k2.obj.abc123.sh-tmp").write_bytes(b"partial")
    assert _sizes(asyncio.run(store.list())) == [("a/k.obj", 1)]


def test_local_rejects_escaping_list_prefix(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(store.list("../"))


def _raw_client(store: S3ObjectStore) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint_url,
        region_name=store.region,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


def test_s3_large_put_uses_multipart(moto_s3_endpoint: str) -> None:
    store = _s3_store(moto_s3_endpoint)
    asyncio.run(store.put("big.obj", bytes(LARGE_OBJECT_BYTES)))
    head = _raw_client(store).head_object(Bucket=store.bucket, Key="cluster/big.obj")
    # A multipart ETag is "<md5 of the part md5s>-<part count>".
    assert head["ETag"].strip('"').endswith("-3")


def test_s3_failed_multipart_is_aborted(moto_s3_endpoint: str) -> None:
    # Parts below S3's 5 MiB minimum make CompleteMultipartUpload fail with EntityTooSmall.
    settings = Settings(s3_multipart_threshold_bytes=2 * MIB, s3_part_bytes=1 * MIB)
    store = _s3_store(moto_s3_endpoint, settings)
    with pytest.raises(ObjectStoreUnavailable, match="EntityTooSmall"):
        asyncio.run(store.put("big.obj", bytes(3 * MIB)))
    uploads = _raw_client(store).list_multipart_uploads(Bucket=store.bucket)
    assert uploads.get("Uploads", []) == []
    assert asyncio.run(store.list()) == []
