"""`logfan replay`: real CloudWatch Logs traffic through the real handlers, on emulated AWS.

inputs -> Kinesis stream (moto) -> event source mapping -> fan-out handler
       -> async invoke queue -> parser handlers -> consolidator handler
then the tables are exported to DIR: matches.jsonl, notifications.jsonl, batches.jsonl,
rejected.jsonl.

By default every replay gets a fresh in-process moto account. With `endpoint_url` (`logfan local up`)
it runs against that server's account instead: the handlers still run here, the rules are the ones
registered there (or a rules file loaded into it first), the mapping delivers only the records this
replay published, and the outputs cover only this replay's batches. What earlier replays recorded
stays: a log event they matched is not matched (nor notified) again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from pipeline import composition
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.adapters.dynamodb_matches import DynamoDBMatchStore
from pipeline.adapters.dynamodb_tracking import DynamoDBTrackingStore
from pipeline.adapters.kinesis_publisher import KinesisPublisher, SequenceRange
from pipeline.config import (
    LAMBDA_ASYNC_PAYLOAD_LIMIT,
    ResourceNames,
)
from pipeline.delivery import DispatchDeps, dispatch
from pipeline.errors import ConfigurationError
from pipeline.faults import NO_FAULTS, FaultPoints
from pipeline.handlers import fan_out, sweeper
from pipeline.local.aws import LOCAL_REGION, LocalAws, endpoint_aws, local_aws
from pipeline.local.chaos import Chaos, ChaosInvoker
from pipeline.local.inputs import PlainTextSource, read_inputs
from pipeline.local.kinesis import EventSourceMapping
from pipeline.local.lambda_runtime import LocalAsyncInvoker, LocalLambdaContext
from pipeline.local.sinks import CapturingNotifier, JsonlRejectSink, JsonlWriter
from pipeline.local.wiring import LocalKnobs, local_channel_notifier, local_invoker, local_wiring
from pipeline.models import BatchRecord, BatchStatus
from pipeline.observability import CountingMetrics
from pipeline.rules_file import RulesFile, load_rules_file

_log = logging.getLogger("logfan.local")

__all__ = ["OUTPUT_FILES", "ReplayOptions", "ReplayReport", "load_config", "replay"]

OUTPUT_FILES = ("matches.jsonl", "notifications.jsonl", "batches.jsonl", "rejected.jsonl")


@dataclass(frozen=True)
class ReplayOptions:
    inputs: list[Path]
    rules: Path | None
    """Customers and rules to register first; None only with `endpoint_url` (its registered rules)."""
    out: Path
    plain_text: PlainTextSource = field(default_factory=PlainTextSource)
    batch_size: int = 100
    shards: int = 1
    workers: int = 4
    max_retry_attempts: int = 5
    rule_timeout_ms: int = 100
    max_invoke_payload_bytes: int | None = None
    chaos_rate: float = 0.0
    """Probability of a fault at each boundary (see pipeline/local/chaos.py); 0 for a clean run."""
    seed: int = 0
    crash_points: FaultPoints | None = None
    """Extra crash injection at the handlers' named steps (tests enumerate every step with it)."""
    sweeper_rounds: int = 20
    digest_window_s: int | None = None
    """A rule's alerts within this long after one went out fold into a digest; None: the default."""
    on_progress: Callable[[int, int], None] | None = None
    """Called with (records delivered so far, records in all) as the mapping advances."""
    deliver: bool = False
    """Really deliver (HTTP to the channels' URLs, SNS/EventBridge to the emulated account); else capture."""
    endpoint_url: str | None = None
    """A moto server (`logfan local up`) to run against, keeping its state; None: a fresh in-process moto."""
    names: ResourceNames = field(default_factory=ResourceNames)
    """The resources' names (the stack prefix; `logfan local up --prefix`)."""


@dataclass
class ReplayReport:
    files: int = 0
    records: int = 0
    events: int = 0
    unclaimed_events: int = 0
    control_records: int = 0
    customers: int = 0
    rules: int = 0
    matches_by_rule: Counter[str] = field(default_factory=Counter)
    timeouts_by_rule: Counter[str] = field(default_factory=Counter)
    notifications: int = 0
    rejected: int = 0
    batches: int = 0
    complete_batches: int = 0
    subtasks: int = 0
    invocations: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    """Async invocations that failed every attempt (the sweeper re-drives their work)."""
    sweeper_runs: int = 0
    redriven_subtasks: int = 0
    abandoned_subtasks: int = 0
    """Sub-tasks the sweeper gave up on: their events were never (fully) matched."""
    unnotified_matches: int = 0
    """Matches whose notification never left the outbox."""
    faults_injected: dict[str, int] = field(default_factory=dict)
    redeliveries_suppressed: int = 0
    """Notifications delivered again after a crash, which receivers drop by notification_id."""
    digests: int = 0
    """Digests the outbox sent in place of a rule's held alerts."""
    folded_alerts: int = 0
    quarantined_rules: list[str] = field(default_factory=list)
    """customer/rule of every rule the parsers quarantined for overrunning its time budget."""
    endpoint_url: str | None = None
    """The server replayed against; None: a fresh in-process moto."""
    rules_loaded_from: str | None = None
    """With an endpoint: the rules file loaded into the server first (None: its registered rules)."""
    already_recorded_matches: int = 0
    """Matches found whose log event an earlier run had already matched: not recorded nor notified again."""
    wall_time_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def matches(self) -> int:
        return sum(self.matches_by_rule.values())

    @property
    def ok(self) -> bool:
        return self.batches == self.complete_batches and not self.abandoned_subtasks and not self.unnotified_matches


def load_config(store: DynamoDBConfigStore, rules_file: RulesFile) -> None:
    """Register the file's customers and rules through the same store the CLI and API use."""
    for customer in rules_file.customers:
        store.put_customer(customer)
    for rule in rules_file.rules:
        store.put_rule(rule)


def _write_jsonl(path: Path, documents: list[dict[str, Any]]) -> None:
    path.write_text(
        "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in documents), encoding="utf-8"
    )


def _published_by_this_run(batch: BatchRecord, ranges: Mapping[str, SequenceRange] | None) -> bool:
    """Whether the batch is made of records this run published (every batch, on a fresh stream)."""
    if ranges is None:
        return True
    published = ranges.get(batch.shard_id)
    return published is not None and batch.first_sequence in published


def _this_run_batches(aws: LocalAws, ranges: Mapping[str, SequenceRange] | None) -> list[BatchRecord]:
    batches = DynamoDBTrackingStore(aws.dynamodb, aws.names.batches_table).iter_batches()
    return [batch for batch in batches if _published_by_this_run(batch, ranges)]


def _export(
    aws: LocalAws, options: ReplayOptions, report: ReplayReport, ranges: Mapping[str, SequenceRange] | None
) -> None:
    """Write the outputs and fill the report: every batch of the account, or with `ranges` only the
    batches made of those records and the matches they recorded."""
    names = aws.names
    these_batches = _this_run_batches(aws, ranges)
    batch_ids = None if ranges is None else {batch.batch_id for batch in these_batches}
    store = DynamoDBMatchStore(aws.dynamodb, names.matches_table)
    matches = sorted(store.iter_matches(batch_ids), key=lambda m: (m.customer_id, m.rule_id, m.timestamp, m.event_id))
    unnotified = store.unnotified(batch_ids)
    report.unnotified_matches = len(unnotified)
    if unnotified:
        _write_jsonl(
            options.out / "unnotified.jsonl",
            [{**match.model_dump(mode="json"), "notification_id": nid} for match, nid in unnotified],
        )
    _write_jsonl(options.out / "matches.jsonl", [m.model_dump(mode="json") for m in matches])
    for match in matches:
        report.matches_by_rule[f"{match.customer_id}/{match.rule_id}"] += 1

    notifications_path = options.out / "notifications.jsonl"
    captured = [json.loads(line) for line in notifications_path.read_text(encoding="utf-8").splitlines()]
    captured.sort(key=lambda n: (n["customer_id"], n["rule_id"], n["notification_id"]))
    _write_jsonl(notifications_path, captured)
    report.notifications = len(captured)

    batches: list[dict[str, Any]] = []
    for batch in these_batches:
        line: dict[str, Any] = {
            "batch_id": batch.batch_id,
            "status": batch.status.value,
            "total_tasks": batch.total_tasks,
            "finished_tasks": batch.finished_tasks,
            "records": batch.records,
            "events": batch.events,
            "rejected_records": batch.rejected_records,
            "control_records": batch.control_records,
            "unclaimed_events": batch.unclaimed_events,
        }
        if batch.summary is not None:
            line.update(
                matches=batch.summary.matches,
                notified_matches=batch.summary.notified_matches,
                abandoned_tasks=batch.summary.abandoned_tasks,
                matches_by_rule=batch.summary.matches_by_rule,
                rule_timeouts=batch.summary.rule_timeouts,
            )
            report.timeouts_by_rule.update(batch.summary.rule_timeouts)
            report.abandoned_subtasks += batch.summary.abandoned_tasks
        batches.append(line)
        report.batches += 1
        report.complete_batches += batch.status is BatchStatus.COMPLETE
        report.subtasks += batch.total_tasks
        report.events += batch.events
        report.unclaimed_events += batch.unclaimed_events
        report.control_records += batch.control_records
    batches.sort(key=lambda b: b["batch_id"])
    _write_jsonl(options.out / "batches.jsonl", batches)

    config = DynamoDBConfigStore(aws.dynamodb, names.config_table)
    report.quarantined_rules = sorted(
        f"{rule.customer_id}/{rule.rule_id}"
        for customer in config.list_customers()
        for rule in config.list_rules(customer.customer_id)
        if rule.quarantined
    )


_OPTION_MINIMUMS = {"batch_size": 1, "shards": 1, "workers": 1, "max_retry_attempts": 0, "rule_timeout_ms": 1}
KINESIS_MAX_BATCH_SIZE = 10_000
"""The largest batch a Kinesis event source mapping delivers."""


def _check_options(options: ReplayOptions) -> None:
    """Refuse knobs that would hang the runtime (no workers, empty batches) or fail deep inside it."""
    problems = [
        f"{name} must be at least {minimum}, not {getattr(options, name)}"
        for name, minimum in _OPTION_MINIMUMS.items()
        if getattr(options, name) < minimum
    ]
    if options.batch_size > KINESIS_MAX_BATCH_SIZE:
        problems.append(f"batch_size must be at most {KINESIS_MAX_BATCH_SIZE}, not {options.batch_size}")
    limit = options.max_invoke_payload_bytes
    if limit is not None and not 4096 <= limit <= LAMBDA_ASYNC_PAYLOAD_LIMIT:
        problems.append(f"max_invoke_payload_bytes must be between 4096 and {LAMBDA_ASYNC_PAYLOAD_LIMIT}, not {limit}")
    if problems:
        raise ConfigurationError("invalid replay options: " + "; ".join(problems))
    if options.rules is None and options.endpoint_url is None:
        raise ConfigurationError(
            "--rules FILE is required: a replay on its own in-process emulation has no rules registered "
            "(or replay against a server holding them: --endpoint-url / AWS_ENDPOINT_URL, see `logfan local up`)"
        )
    if options.endpoint_url is not None and options.chaos_rate:
        raise ConfigurationError(
            "--chaos needs the in-process emulation (its faults, crashes and left-overs stay out of any server): "
            "replay without --endpoint-url / AWS_ENDPOINT_URL"
        )


def _sweep_until_complete(
    tracking: DynamoDBTrackingStore,
    invoker: LocalAsyncInvoker,
    names: ResourceNames,
    rounds: int,
    report: ReplayReport,
) -> None:
    """The scheduled sweeper, as a step: once the queues are idle, whatever is open is stuck."""
    for _ in range(rounds):
        if next(tracking.open_batches(created_before_ms=2**62), None) is None:
            return
        report.sweeper_runs += 1
        try:
            result = sweeper.handler({}, cast(LambdaContext, LocalLambdaContext(names.sweeper_function, 60)))
            report.redriven_subtasks += int(result["redriven"])
        except Exception as exc:
            _log.warning("sweeper run failed; the next run retries", extra={"error": repr(exc)})
        invoker.wait_idle()


def _drain_outbox(deps: DispatchDeps, rounds: int, report: ReplayReport) -> None:
    """The dispatcher's runs after the last one: deliver whatever the outbox still holds.

    On AWS the scheduled sweeper dispatches every minute; a replay ends sooner than a digest
    window, so its last step delivers every held alert now (folded per rule, as on AWS).
    """
    for _ in range(rounds):
        try:
            result = dispatch(deps, drain=True)
        except Exception as exc:  # a crash injected by chaos, or a store fault: the next run retries
            _log.warning("outbox dispatch failed; the next run retries", extra={"error": repr(exc)})
            continue
        report.digests += result.digests
        report.folded_alerts += result.folded
        if result.due == 0:
            return


@contextmanager
def _account(options: ReplayOptions) -> Iterator[LocalAws]:
    """A fresh in-process account for this run, or the account of the server at the endpoint (kept)."""
    if options.endpoint_url is None:
        with local_aws(options.names, shards=options.shards) as aws:
            yield aws
        return
    try:
        aws = endpoint_aws(options.endpoint_url, options.names, shards=options.shards)
    except (BotoCoreError, ClientError) as exc:
        raise ConfigurationError(f"cannot set up logfan's resources at {options.endpoint_url}: {exc}") from exc
    yield aws


def _register_rules(aws: LocalAws, rules_file: RulesFile | None, report: ReplayReport) -> None:
    """Load the rules file into the account, if there is one; on a server, count what the parsers will
    find there (customers registered earlier included) and refuse an account without customers."""
    config = DynamoDBConfigStore(aws.dynamodb, aws.names.config_table)
    if rules_file is not None:
        load_config(config, rules_file)
    if aws.endpoint_url is None:
        return
    customers = config.list_customers()
    if not customers:
        raise ConfigurationError(
            f"no customer is registered at {aws.endpoint_url} (table {aws.names.config_table}): register one "
            "with `logfan customers add` (or `logfan rules import FILE`), or pass --rules FILE"
        )
    report.customers = len(customers)
    report.rules = sum(len(config.list_rules(customer.customer_id)) for customer in customers)


def replay(options: ReplayOptions) -> ReplayReport:
    """Run the whole pipeline over `options.inputs`; raises `ConfigurationError` / `RulesFileError` /
    `InputError` up front."""
    _check_options(options)
    started = time.perf_counter()
    rules_file = load_rules_file(options.rules) if options.rules is not None else None
    rules_path = options.rules.resolve() if options.rules is not None else None
    inputs = [
        (path, records)
        for path, records in read_inputs(options.inputs, options.plain_text)
        if path.resolve() != rules_path
    ]
    report = ReplayReport(files=len(inputs), endpoint_url=options.endpoint_url)
    if rules_file is not None:
        report.customers, report.rules = len(rules_file.customers), len(rules_file.rules)
        if options.endpoint_url is not None:
            report.rules_loaded_from = str(options.rules)
    outgoing = [record for _, records in inputs for record in records]
    report.records = len(outgoing)

    options.out.mkdir(parents=True, exist_ok=True)
    rejected = JsonlWriter(options.out / "rejected.jsonl")
    notifications = JsonlWriter(options.out / "notifications.jsonl")
    names = options.names
    metrics = CountingMetrics()
    knobs = LocalKnobs(
        max_invoke_payload_bytes=options.max_invoke_payload_bytes,
        rule_timeout_ms=options.rule_timeout_ms,
        # Under chaos every attempt can die; the sweeper keeps re-driving for as many rounds as it has.
        max_redrives=options.sweeper_rounds if options.chaos_rate else 3,
        digest_window_s=options.digest_window_s,
        channel_rate_limits=options.deliver,
    )

    chaos = Chaos(options.chaos_rate, options.seed) if options.chaos_rate else None

    with _account(options) as aws:
        _register_rules(aws, rules_file, report)
        publisher = KinesisPublisher(aws.kinesis, names.stream)
        publisher.publish(outgoing)
        # A server's stream still holds earlier replays' records: deliver and report only this run's.
        ranges = None if aws.endpoint_url is None else dict(publisher.published)
        # The functions get their own client, the one chaos breaks; the runtime's bookkeeping
        # (is anything still open? export) reads through the undisturbed one.
        functions_dynamodb = aws.new_dynamodb()
        if chaos is not None:
            chaos.attach_dynamodb(functions_dynamodb.unwrapped)

        invoker = local_invoker(names, knobs, workers=options.workers)
        capture = CapturingNotifier(
            notifications, LOCAL_REGION, deliver_with=local_channel_notifier(aws) if options.deliver else None
        )
        wiring = local_wiring(
            aws,
            knobs,
            invoker=invoker if chaos is None else ChaosInvoker(invoker, chaos),
            rejects=JsonlRejectSink(rejected),
            notifier=capture,
            metrics=metrics,
            faults=options.crash_points or chaos or NO_FAULTS,
            dynamodb=functions_dynamodb,
        )
        delivered = 0

        def progress(count: int) -> None:
            nonlocal delivered
            delivered += count
            if options.on_progress is not None:
                options.on_progress(delivered, len(outgoing))

        mapping = EventSourceMapping(
            kinesis=aws.kinesis,
            stream_name=names.stream,
            stream_arn=aws.stream_arn,
            handler=fan_out.handler,
            function_name=names.fan_out_function,
            batch_size=options.batch_size,
            # Under chaos a batch may fail many times before it gets through; Kinesis keeps it.
            max_retry_attempts=options.max_retry_attempts if chaos is None else 10_000,
            on_progress=progress,
            chaos=chaos,
            ranges=ranges,
        )
        tracking = DynamoDBTrackingStore(aws.dynamodb, names.batches_table)
        with composition.install(wiring):
            invoker.start()
            try:
                mapping.drain()
                invoker.wait_idle()
                _sweep_until_complete(tracking, invoker, names, options.sweeper_rounds, report)
                _drain_outbox(wiring.sweeper.dispatch, options.sweeper_rounds, report)
            finally:
                invoker.stop()

        for discarded in mapping.discarded:
            for sequence_number in discarded.sequence_numbers:
                rejected.write(
                    {
                        "kind": "discarded_by_mapping",
                        "shard_id": discarded.shard_id,
                        "sequence_number": sequence_number,
                        "reason": discarded.reason,
                    }
                )
        if invoker.dead_letters:
            _write_jsonl(
                options.out / "dead_letters.jsonl",
                [
                    {"function": letter.function_name, "reason": letter.error, "attempts": letter.attempts}
                    for letter in invoker.dead_letters
                ],
            )
        report.dead_letters = len(invoker.dead_letters)
        report.redeliveries_suppressed = capture.redeliveries
        if capture.failures:
            _write_jsonl(options.out / "delivery_failures.jsonl", capture.failures)
        report.faults_injected = dict(chaos.injected) if chaos is not None else {}
        report.invocations = {"fan-out": mapping.invocations, **invoker.invocations}
        report.already_recorded_matches = int(metrics.snapshot().get("DuplicateMatches", 0))
        _export(aws, options, report, ranges)

    report.rejected = sum(1 for _ in (options.out / "rejected.jsonl").open(encoding="utf-8"))
    report.metrics = metrics.snapshot()
    report.wall_time_s = time.perf_counter() - started
    return report
