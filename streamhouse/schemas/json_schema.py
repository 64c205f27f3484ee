from __future__ import annotations
def parse_json_schema(text, dependencies, normalize):  # type: ignore
    raise NotImplementedError
