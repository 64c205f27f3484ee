from __future__ import annotations


def parse_protobuf(text, dependencies, normalize):  # type: ignore
    raise NotImplementedError
