"""Fan-out Lambda: triggered by the Kinesis event source mapping (ReportBatchItemFailures on)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.composition import fan_out_deps
from pipeline.fanout import KinesisRecordRef, process_batch
from pipeline.observability import annotate, invocation, traced

__all__ = ["handler"]


def _records(event: dict[str, Any]) -> list[KinesisRecordRef]:
    return [
        KinesisRecordRef(
            event_id=record.event_id,
            shard_id=record.event_id.split(":", 1)[0],
            sequence_number=record.kinesis.sequence_number,
            data=record.kinesis.data,
        )
        for record in KinesisStreamEvent(event).records
    ]


@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = fan_out_deps()
    records = _records(event)
    with invocation(context, handler="fan_out") as logger:
        try:
            result = process_batch(deps, records, context.get_remaining_time_in_millis)
        finally:
            deps.metrics.flush()
        annotate(batch_id=result.batch_id)
        logger.info(
            "fanned out Kinesis batch",
            extra={
                "batch_id": result.batch_id,
                "records": result.records,
                "poison_records": result.poison_records,
                "control_records": result.control_records,
                "events": result.events,
                "unclaimed_events": result.unclaimed_events,
                "subtasks": result.subtasks,
                "invoked": result.invoked,
                "resumed": result.resumed,
                "failed_records": len(result.failed_sequence_numbers),
            },
        )
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in result.failed_sequence_numbers]}
