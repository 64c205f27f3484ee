"""The object reader against a bucket that changes under it: an object replaced between the
two reads of its footer is reported corrupt (someone else's bytes), never an agent crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamhouse.engine.object_reader import ObjectReader
from streamhouse.errors import CorruptObject
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.log.object_format import FOOTER_READ_GUESS_BYTES, BlockSpec, encode_object

KEY = "orgs/default/objects/20261130/a-01x.obj"


def _object(blocks: int, topic: str) -> bytes:
    specs = [BlockSpec(topic, index, 0, 0, 0, 0, b"x") for index in range(blocks)]
    return encode_object(specs, "default", "a", 0)[0]


class ReplacedAfterFirstRead(LocalObjectStore):
    """Puts `replacement` under the key once the first suffix read has been answered."""

    def __init__(self, root: str, replacement: bytes) -> None:
        super().__init__(root)
        self.replacement = replacement
        self.replaced = False

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        answer = await super().get_suffix(key, length)
        if not self.replaced:
            self.replaced = True
            await self.put(key, self.replacement)
        return answer


def test_an_object_replaced_between_footer_reads_is_corrupt(tmp_path: Path) -> None:
    large = _object(2_000, "t" * 40)  # a footer past the first read's guess
    assert len(large) > FOOTER_READ_GUESS_BYTES
    store = ReplacedAfterFirstRead(str(tmp_path), _object(4_000, "u" * 60))

    async def read() -> None:
        await store.put(KEY, large)
        await ObjectReader(store).footer(KEY)

    with pytest.raises(CorruptObject, match="changed while its footer was read"):
        asyncio.run(read())
