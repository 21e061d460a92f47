"""Every error logfan raises on purpose derives from `LogfanError`."""

from __future__ import annotations

__all__ = [
    "BatchConflictError",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "InvokeError",
    "LogfanError",
    "NotFoundError",
    "PoisonRecordError",
    "RejectedError",
    "RulesFileError",
    "StoreError",
    "TimeBudgetError",
    "TransientStoreError",
]


class LogfanError(Exception):
    """Base of all logfan errors."""


class PoisonRecordError(LogfanError):
    """A Kinesis record that can never be decoded; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RulesFileError(LogfanError):
    """A rules file that cannot be loaded; the message names the entry and the field."""


class ConfigurationError(LogfanError):
    """Settings or wiring that make a function unable to run at all."""


class StoreError(LogfanError):
    """A DynamoDB call failed for a reason retrying will not fix."""


class TransientStoreError(StoreError):
    """A DynamoDB call failed after bounded retries (throttling, 5xx); the caller may retry later."""


class BatchConflictError(StoreError):
    """A conditional write lost against another writer (the state moved under us)."""


class TimeBudgetError(LogfanError):
    """Too little of the invocation's time is left to finish safely; the work is handed back."""


class InvokeError(LogfanError):
    """An asynchronous Lambda invoke failed after bounded retries."""


class DeliveryError(LogfanError):
    """A notification could not be delivered; `permanent` ones (4xx, bad target) are not retried.

    `retry_after_s` is how long the receiver asked us to wait (HTTP `Retry-After`) when that is
    longer than the notifier is willing to wait in-line: the caller holds the notification back.
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class RejectedError(LogfanError):
    """A rule or channel refused at registration; `problems` lists every reason (never a secret)."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class NotFoundError(LogfanError):
    """The customer, rule or channel asked for does not exist (for the caller)."""


class ConflictError(StoreError):
    """A write whose precondition failed: the item exists already, or changed since it was read."""
