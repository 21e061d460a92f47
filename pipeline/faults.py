"""Named steps where a run can die, so the local runtime can prove recovery from each of them.

On AWS `NO_FAULTS` is wired in and `reached` does nothing. The local runtime's chaos mode wires an
injector that raises `InjectedCrash` at these points, as a Lambda timeout or an out-of-memory kill
would stop the function right after a side effect.
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ["CRASH_POINTS", "NO_FAULTS", "FaultPoints", "InjectedCrash", "NoFaults"]

CRASH_POINTS: Final = (
    "fan_out.after_start_batch",
    "fan_out.after_invoke",
    "parser.after_record_matches",
    "parser.after_send",
    "parser.after_mark_sent",
    "parser.before_finish",
    "parser.after_finish",
    "parser.after_claim_consolidation",
    "consolidator.before_complete",
    "consolidator.after_complete",
)


class InjectedCrash(Exception):
    """A simulated crash; deliberately not a `LogfanError`, so nothing in the domain handles it."""


class FaultPoints(Protocol):
    def reached(self, point: str, key: str) -> None:
        """The step `point` just completed for `key` (e.g. a sub-task); an injector may crash here."""
        ...


class NoFaults:
    def reached(self, point: str, key: str) -> None:
        """Production: nothing happens."""


NO_FAULTS: Final = NoFaults()
