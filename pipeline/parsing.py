"""The parser's work for one sub-task: match, record, notify, finish (pure over ports).

Order matters for "nothing lost, nothing twice": matches are recorded (claimed for a
notification id) before anything is sent, the notification is written to the outbox before it
goes out and marked sent after, and only then does the sub-task finish. A re-run of the same
sub-task therefore re-sends what was not sent and nothing else. A run first leases the sub-task
until its invocation's deadline, so a duplicate delivered while it works skips instead of sending
the same notifications alongside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline import fanin
from pipeline.delivery import DeliveryDeps, deliver_alert
from pipeline.errors import LogfanError
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.invoking import backoff_delay, invoke_with_retries, trigger_consolidator
from pipeline.matching import MatchResult
from pipeline.models import (
    BatchStatus,
    CarriedStats,
    RuleStats,
    StreamEvents,
    SubTaskPayload,
    SubTaskRecord,
    SubTaskStatus,
)
from pipeline.notifications import build_notification, group_by_rule, notification_id_for
from pipeline.ports import (
    Clock,
    FunctionInvoker,
    MatchStore,
    MetricsSink,
    NotificationStatus,
    RuleHealthStore,
    SubTaskLeases,
    TrackingStore,
)
from pipeline.quarantining import QuarantinePolicy, enforce_budgets
from pipeline.routing import encode_payload
from pipeline.rules_cache import CompiledCustomer, CustomerRulesCache

__all__ = ["ParserDeps", "ParserOutcome", "run_subtask"]

_log = logging.getLogger("logfan.parsing")

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class ParserDeps:
    tracking: TrackingStore
    leases: SubTaskLeases
    rules: CustomerRulesCache
    matches: MatchStore
    delivery: DeliveryDeps
    health: RuleHealthStore
    invoker: FunctionInvoker
    metrics: MetricsSink
    clock: Clock
    consolidator_function: str
    notification_samples: int
    match_ttl_days: int
    invoke_max_attempts: int
    invoke_backoff_s: float
    parser_function: str = ""
    """This function's own name, for handing the rest of a sub-task to a fresh invocation."""
    time_reserve_ms: int = 30_000
    slice_events: int = 500
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    faults: FaultPoints = NO_FAULTS


@dataclass(slots=True)
class ParserOutcome:
    status: Literal["finished", "skipped", "continued"]
    reason: str = ""
    events: int = 0
    matches: int = 0
    notified: int = 0
    notifications: int = 0
    consolidator_triggered: bool = False
    rule_stats: dict[str, RuleStats] = field(default_factory=dict)


def _slices(streams: Sequence[StreamEvents], size: int) -> list[list[StreamEvents]]:
    """Cut the payload into slices of at most `size` events, splitting streams where needed."""
    slices: list[list[StreamEvents]] = [[]]
    room = size
    for stream in streams:
        start = 0
        while start < len(stream.events):
            if room == 0:
                slices.append([])
                room = size
            take = stream.events[start : start + room]
            slices[-1].append(stream.model_copy(update={"events": take}))
            start += len(take)
            room -= len(take)
    return [piece for piece in slices if piece]


def _rejoin(slices: Sequence[Sequence[StreamEvents]]) -> list[StreamEvents]:
    streams: list[StreamEvents] = []
    for piece in slices:
        for stream in piece:
            last = streams[-1] if streams else None
            if last is not None and (last.owner, last.log_group, last.log_stream) == (
                stream.owner,
                stream.log_group,
                stream.log_stream,
            ):
                streams[-1] = last.model_copy(update={"events": [*last.events, *stream.events]})
            else:
                streams.append(stream)
    return streams


def _match(
    deps: ParserDeps, compiled: CompiledCustomer | None, payload: SubTaskPayload, deadline_ms: int
) -> tuple[MatchResult, list[StreamEvents]]:
    """Match slice by slice until done or until the invocation runs short of time.

    Returns the result so far and the streams not yet matched (empty when done). At least one
    slice is always matched, so every hand-over makes progress.
    """
    if compiled is None:
        return MatchResult(events=payload.event_count), []
    slices = _slices(payload.streams, deps.slice_events)
    total = MatchResult()
    for index, piece in enumerate(slices):
        if index and deps.clock.now_ms() >= deadline_ms - deps.time_reserve_ms:
            return total, _rejoin(slices[index:])
        part = compiled.engine.match(piece, total.spent_s)
        total.matches.extend(part.matches)
        total.events += part.events
        total.spent_s = part.spent_s
        for rule_id, stats in part.stats.items():
            total.stats[rule_id] = total.stats[rule_id].plus(stats) if rule_id in total.stats else stats
    return total, []


def _notify(
    deps: ParserDeps, compiled: CompiledCustomer, payload: SubTaskPayload, result: MatchResult
) -> tuple[int, int]:
    """Claim each rule's matches for its alert and deliver it (or hold it back for a digest).

    Returns (matches notified, alerts sent now). Delivery failures never fail the sub-task: a
    transient one leaves the alert held in the outbox for the dispatcher to retry, a permanent
    one is recorded on the alert and its channel.
    """
    now_s = deps.clock.now_ms() // 1000
    expires_at = now_s + deps.match_ttl_days * DAY_S
    rules = {rule.rule_id: rule for rule in compiled.config.rules}
    notified = 0
    sent = 0
    for rule_id, found in group_by_rule(result.matches).items():
        rule = rules[rule_id]
        notification_id = notification_id_for(
            payload.customer_id, rule_id, payload.batch_id, payload.subtask_id, payload.part
        )
        claimed = deps.matches.claim_matches(
            found,
            notification_id,
            batch_id=payload.batch_id,
            subtask_id=payload.subtask_id,
            expires_at=expires_at,
        )
        deps.metrics.count("DuplicateMatches", len(found) - len(claimed))
        deps.faults.reached("parser.after_record_matches", notification_id)
        if not claimed:
            continue
        notified += len(claimed)
        previous = deps.matches.load_notification(notification_id)
        if previous is not None and previous.status is not NotificationStatus.PENDING:
            continue  # sent, held for the dispatcher, folded into a digest, or failed for good
        channel = compiled.config.channel(rule.channel)
        if channel is None:
            _log.error(
                "rule names a channel the customer does not have",
                extra={"rule_id": rule_id, "channel_id": rule.channel},
            )
            deps.metrics.count("NotificationFailures")
            continue
        notification = build_notification(
            rule,
            channel,
            notification_id,
            claimed,
            batch_id=payload.batch_id,
            subtask_id=payload.subtask_id,
            max_samples=deps.notification_samples,
        )
        if deliver_alert(deps.delivery, notification, channel, previous) == "sent":
            sent += 1
    return notified, sent


def run_subtask(deps: ParserDeps, payload: SubTaskPayload, *, run_id: str, deadline_ms: int) -> ParserOutcome:
    """Process one sub-task at most once to completion; duplicates return without side effects.

    `run_id` names this run (Lambda's request id, which its async retries keep) and `deadline_ms`
    is when its invocation times out: the sub-task is held for it until then.
    """
    record = deps.tracking.get_subtask(payload.batch_id, payload.subtask_id)
    if record is None:
        _log.warning("sub-task is not tracked; ignoring the invocation")
        return ParserOutcome(status="skipped", reason="unknown sub-task")
    if record.status is not SubTaskStatus.PENDING:
        deps.metrics.count("DuplicateInvocations")
        outcome = ParserOutcome(status="skipped", reason=f"sub-task already {record.status.value}")
        if _consolidation_left_to(deps, payload.batch_id, _claimant(payload, run_id)):
            _trigger_consolidator(deps, payload.batch_id, outcome)
        return outcome
    if not deps.leases.lease_subtask(
        payload.batch_id, payload.subtask_id, run_id, now_ms=deps.clock.now_ms(), until_ms=deadline_ms
    ):
        # The run holding it finishes it, or fails and has its own invocation retried.
        deps.metrics.count("DuplicateInvocations")
        return ParserOutcome(status="skipped", reason="another run is processing the sub-task")
    try:
        return _process(deps, payload, record, run_id, deadline_ms)
    except BaseException:
        _release(deps, payload, run_id)
        raise


RELEASE_ATTEMPTS = 3


def _release(deps: ParserDeps, payload: SubTaskPayload, run_id: str) -> None:
    """Give the lease up for Lambda's retry; a lease that cannot be released lapses at the deadline."""
    for attempt in range(RELEASE_ATTEMPTS):
        try:
            deps.leases.release_subtask(payload.batch_id, payload.subtask_id, run_id)
            return
        except LogfanError as exc:
            if attempt + 1 == RELEASE_ATTEMPTS:
                _log.error(
                    "could not release the sub-task; its lease lapses at the deadline", extra={"error": str(exc)}
                )
                return
            time.sleep(backoff_delay(attempt, deps.invoke_backoff_s))


def _hand_over(
    deps: ParserDeps,
    payload: SubTaskPayload,
    run_id: str,
    left: list[StreamEvents],
    totals: CarriedStats,
    sent: int,
) -> ParserOutcome:
    """Out of time: give the rest of the sub-task, with the results so far, to a fresh invocation.

    The lease goes first, so the next part can take it; if the invoke then fails, this part
    raises and Lambda retries it (its matches and notifications are already idempotent).
    """
    rest = payload.model_copy(update={"streams": left, "part": payload.part + 1, "carried": totals})
    deps.leases.release_subtask(payload.batch_id, payload.subtask_id, run_id)
    invoke_with_retries(
        deps.invoker,
        deps.parser_function,
        encode_payload(rest),
        attempts=deps.invoke_max_attempts,
        backoff_s=deps.invoke_backoff_s,
    )
    deps.metrics.count("SubTaskHandOvers")
    _log.info(
        "ran short of time; handed the rest of the sub-task on",
        extra={"part": rest.part, "events_left": rest.event_count},
    )
    return ParserOutcome(
        status="continued",
        reason=f"handed {rest.event_count} events to part {rest.part}",
        events=totals.events,
        matches=totals.matches,
        notified=totals.notified,
        notifications=sent,
        rule_stats=totals.rule_stats,
    )


def _claimant(payload: SubTaskPayload, run_id: str) -> str:
    return f"{payload.subtask_id}@{run_id}"


def _consolidation_left_to(deps: ParserDeps, batch_id: str, claimant: str) -> bool:
    """Whether a re-run must trigger the consolidator of a batch that is ready but still open.

    True when an earlier attempt of this run claimed the consolidation and then failed to invoke
    the consolidator (this is Lambda retrying it), or when nobody could claim it yet (a failed
    claim) and this call wins it now.
    """
    batch = deps.tracking.get_batch(batch_id)
    if batch is None or batch.status is not BatchStatus.OPEN or batch.finished_tasks < batch.total_tasks:
        return False
    if batch.consolidation_claimed_by is None:
        return deps.tracking.claim_consolidation(batch_id, claimant)
    return batch.consolidation_claimed_by == claimant


def _trigger_consolidator(deps: ParserDeps, batch_id: str, outcome: ParserOutcome) -> None:
    trigger_consolidator(
        deps.invoker,
        deps.consolidator_function,
        batch_id,
        attempts=deps.invoke_max_attempts,
        backoff_s=deps.invoke_backoff_s,
    )
    outcome.consolidator_triggered = True


def _process(
    deps: ParserDeps, payload: SubTaskPayload, record: SubTaskRecord, run_id: str, deadline_ms: int
) -> ParserOutcome:
    compiled = deps.rules.get(payload.customer_id)
    if compiled is None:
        _log.warning(
            "customer has no configuration; its events match nothing",
            extra={"customer_id": payload.customer_id},
        )
    elif compiled.broken_rules:
        deps.metrics.count("BrokenRules", len(compiled.broken_rules))
        _log.error("rules that do not compile were skipped", extra={"broken_rules": compiled.broken_rules})

    result, left = _match(deps, compiled, payload, deadline_ms)
    # CloudWatch Logs may deliver an event twice and both copies can land in one payload.
    result.matches = list({match.match_key: match for match in result.matches}.values())
    # The fan-out counts `Events` as they arrive; this counts those matched, so the two differ
    # only by what was unclaimed or is still on its way.
    deps.metrics.count("EventsMatched", result.events)
    deps.metrics.count("Matches", len(result.matches))
    deps.metrics.count("RuleTimeouts", result.timeouts)
    for rule_id, stats in result.stats.items():
        if stats.timeouts or stats.skipped_lines:
            _log.warning(
                "rule exceeded its time bound",
                extra={"rule_id": rule_id, "timeouts": stats.timeouts, "skipped_lines": stats.skipped_lines},
            )
    if compiled is not None and enforce_budgets(
        deps.health, deps.delivery, compiled.config, result.stats, deps.quarantine
    ):
        deps.rules.invalidate(payload.customer_id)
    notified, sent = _notify(deps, compiled, payload, result) if compiled and result.matches else (0, 0)
    totals = (payload.carried or CarriedStats()).plus(result.events, len(result.matches), notified, result.stats)
    if left:
        return _hand_over(deps, payload, run_id, left, totals, sent)

    done = record.model_copy(
        update={"matches": totals.matches, "notified": totals.notified, "rule_stats": totals.rule_stats}
    )
    finished, consolidate = fanin.finish_subtask(
        deps.tracking,
        done,
        SubTaskStatus.FINISHED,
        now_ms=deps.clock.now_ms(),
        claimant=_claimant(payload, run_id),
        faults=deps.faults,
    )
    outcome = ParserOutcome(
        status="finished" if finished else "skipped",
        reason="" if finished else "another run finished the sub-task first",
        events=totals.events,
        matches=totals.matches,
        notified=totals.notified,
        notifications=sent,
        rule_stats=totals.rule_stats,
    )
    if consolidate:
        deps.faults.reached("parser.after_claim_consolidation", payload.batch_id)
        # Raising from here leaves the sub-task finished: Lambda's retry finds the claim and retries the invoke.
        _trigger_consolidator(deps, payload.batch_id, outcome)
    return outcome
