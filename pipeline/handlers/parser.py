"""Parser Lambda: one customer's sub-task, invoked asynchronously by the fan-out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import parser_deps
from pipeline.models import SubTaskPayload
from pipeline.observability import invocation, traced
from pipeline.parsing import run_subtask

__all__ = ["handler"]


@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = parser_deps()
    payload = SubTaskPayload.model_validate(event)
    keys = {
        "batch_id": payload.batch_id,
        "subtask_id": payload.subtask_id,
        "customer_id": payload.customer_id,
    }
    with invocation(context, handler="parser", **keys) as logger:
        try:
            outcome = run_subtask(
                deps,
                payload,
                run_id=context.aws_request_id,
                deadline_ms=deps.clock.now_ms() + context.get_remaining_time_in_millis(),
            )
        finally:
            deps.metrics.flush()
        logger.info(
            "sub-task processed",
            extra={
                "status": outcome.status,
                "reason": outcome.reason,
                "events": outcome.events,
                "matches": outcome.matches,
                "notified": outcome.notified,
                "notifications": outcome.notifications,
                "consolidator_triggered": outcome.consolidator_triggered,
            },
        )
    return {"status": outcome.status, "matches": outcome.matches, "notifications": outcome.notifications}
