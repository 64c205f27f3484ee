"""Port values read from rows whose columns are named like the value's fields."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def record_from_row(record_type: type[R], row: Row[Any], **derived: Any) -> R:
    """`record_type` built from the row's columns of the same names as its fields, but for
    the `derived` fields, given here (computed, not stored)."""
    stored = (field.name for field in fields(record_type) if field.name not in derived)
    return record_type(**{name: getattr(row, name) for name in stored}, **derived)
