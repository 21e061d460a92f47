"""Sweeper Lambda: on a schedule, re-drives batches left open past their deadline and dispatches
the notification outbox (digests, held and retried notifications)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import sweeper_deps
from pipeline.delivery import dispatch
from pipeline.observability import invocation, traced
from pipeline.sweeping import sweep

__all__ = ["handler"]


@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = sweeper_deps()
    with invocation(context, handler="sweeper") as logger:
        try:
            result = sweep(deps)
            dispatched = dispatch(deps.dispatch)
        finally:
            deps.metrics.flush()
        logger.info(
            "swept open batches",
            extra={
                "stuck_batches": result.stuck_batches,
                "consolidations": result.consolidations,
                "redriven": result.redriven,
                "abandoned": result.abandoned,
                "errors": result.errors,
                "scheduled_at": event.get("time", ""),
            },
        )
        logger.info(
            "dispatched the outbox",
            extra={
                "due": dispatched.due,
                "sent": dispatched.sent,
                "digests": dispatched.digests,
                "folded": dispatched.folded,
                "held": dispatched.held,
                "failed": dispatched.failed,
                "errors": dispatched.errors,
            },
        )
    return {
        "stuck_batches": result.stuck_batches,
        "consolidations": result.consolidations,
        "redriven": result.redriven,
        "abandoned": result.abandoned,
        "notifications_sent": dispatched.sent,
        "digests": dispatched.digests,
    }
