"""AWS list prices (kept here, in one place) and a DynamoDB client proxy that counts request units.

Request units are computed from the requests and responses the way DynamoDB bills on-demand
tables: a write unit per started KiB of the item written (twice in a transaction), a read unit per
started 4 KiB read with strong consistency (half without, twice in a transaction). For updates the
item size is not on the wire; the keys and new values are counted, which is exact for logfan's
small tracking items and a lower bound otherwise.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRICES", "CountingDynamoDB", "Prices", "item_size"]


@dataclass(frozen=True, slots=True)
class Prices:
    """us-east-1 list prices, USD (on-demand DynamoDB since the November 2024 cut; Lambda x86)."""

    dynamodb_write_per_million: float = 0.625
    dynamodb_read_per_million: float = 0.125
    lambda_request_per_million: float = 0.20
    lambda_gb_second: float = 0.0000166667


PRICES = Prices()


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind in ("S",):
        return len(str(inner).encode())
    if kind == "B":
        return len(inner)
    if kind == "N":
        return math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v).encode()) for v in inner)
    return 0


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: attribute names plus values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def _read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


@dataclass
class CountingDynamoDB:
    """Wraps the DynamoDB client handed to the handlers; counts calls and request units per operation."""

    client: Any
    calls: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if name.startswith("_") or not callable(attribute) or name in ("get_paginator", "get_waiter"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                response = attribute(*args, **kwargs)
            except Exception as exc:
                # A failed conditional write is still billed as a write.
                if "ConditionalCheckFailed" in type(exc).__name__ or "ConditionalCheckFailed" in str(exc):
                    self._count(name, kwargs, {})
                raise
            self._count(name, kwargs, response or {})
            return response

        return call

    def _count(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        writes = 0.0
        reads = 0.0
        consistent = bool(request.get("ConsistentRead"))
        if operation in ("put_item",):
            writes = _write_units(item_size(request.get("Item", {})))
        elif operation in ("update_item", "delete_item"):
            size = item_size(request.get("Key", {})) + item_size(request.get("ExpressionAttributeValues", {}))
            writes = _write_units(size)
        elif operation == "batch_write_item":
            for requests in request.get("RequestItems", {}).values():
                for entry in requests:
                    put = entry.get("PutRequest")
                    writes += _write_units(item_size(put["Item"])) if put else 1
        elif operation == "transact_write_items":
            for entry in request.get("TransactItems", []):
                if "Put" in entry:
                    writes += 2 * _write_units(item_size(entry["Put"]["Item"]))
                else:
                    (action,) = entry.values()
                    size = item_size(action.get("Key", {})) + item_size(action.get("ExpressionAttributeValues", {}))
                    writes += 2 * _write_units(size)
        elif operation == "get_item":
            reads = _read_units(item_size(response.get("Item", {})), consistent)
        elif operation in ("query", "scan"):
            reads = _read_units(sum(item_size(i) for i in response.get("Items", [])), consistent)
        elif operation == "batch_get_item":
            for items in response.get("Responses", {}).values():
                reads += sum(_read_units(item_size(i), consistent) for i in items)
        elif operation == "transact_get_items":
            reads = sum(2 * _read_units(item_size(r.get("Item", {})), True) for r in response.get("Responses", []))
        with self._lock:
            self.calls[operation] += 1
            self.write_units += writes
            self.read_units += reads
