"""Sweeper Lambda: on a schedule, re-drives batches left open past their deadline."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import sweeper_deps
from pipeline.observability import invocation
from pipeline.sweeping import sweep

__all__ = ["handler"]


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = sweeper_deps()
    with invocation(context, handler="sweeper") as logger:
        try:
            result = sweep(deps)
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
    return {
        "stuck_batches": result.stuck_batches,
        "consolidations": result.consolidations,
        "redriven": result.redriven,
        "abandoned": result.abandoned,
    }
