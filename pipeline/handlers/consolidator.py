"""Consolidator Lambda: the fan-in, invoked once by whoever finished a batch's last sub-task."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from pipeline.composition import consolidator_deps
from pipeline.fanin import consolidate, record_completion
from pipeline.observability import invocation, traced

__all__ = ["handler"]


class ConsolidatorEvent(BaseModel):
    batch_id: str = Field(min_length=1)


@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = consolidator_deps()
    request = ConsolidatorEvent.model_validate(event)
    with invocation(context, handler="consolidator", batch_id=request.batch_id) as logger:
        try:
            summary = consolidate(deps.tracking, request.batch_id, now_ms=deps.clock.now_ms(), faults=deps.faults)
            if summary is not None:
                record_completion(deps.metrics, summary)
        finally:
            deps.metrics.flush()
        if summary is None:
            logger.info("batch already complete or not ready; nothing to do")
            return {"status": "noop"}
        logger.info("batch complete", extra={"summary": summary.model_dump(mode="json")})
    return {"status": "complete", "summary": summary.model_dump(mode="json")}
