"""Grouping events by owner -> customer and cutting them into sub-tasks under the payload limit."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.models import LogEvent, StreamEvents, SubTaskPayload
from pipeline.routing import (
    BatchPlan,
    DecodedRecord,
    PlannedSubTask,
    compute_batch_id,
    encode_payload,
    plan_batch,
    subtask_id_for,
)
from tests import factories as f

ACME_PAYMENTS = "111122223333"
ACME_WEB = "444455556666"
GLOBEX = "777788889999"
STRANGER = "999900001111"
OWNERS = {ACME_PAYMENTS: "acme", ACME_WEB: "acme", GLOBEX: "globex"}

# Characters JSON escapes (quote, backslash, newline, tab, control), multi-byte UTF-8 and an emoji.
TRICKY = '"\\\n\t\x00\x1f\x7fé€ü中😀 a'

StreamKey = tuple[str, str, str]


def _key(stream: StreamEvents) -> StreamKey:
    return (stream.owner, stream.log_group, stream.log_stream)


def _events_of(subtasks: Sequence[PlannedSubTask]) -> list[tuple[StreamKey, LogEvent]]:
    return [(_key(s), e) for subtask in subtasks for s in subtask.payload().streams for e in s.events]


def _encoded(subtask: PlannedSubTask) -> bytes:
    """The bytes the invoker sends, held to be exactly what `encode_payload` writes for their payload."""
    encoded = subtask.encode()
    assert encoded == encode_payload(subtask.payload())
    assert len(encoded) == subtask.size
    return encoded


def _with_event(payload: SubTaskPayload, key: StreamKey, event: LogEvent) -> SubTaskPayload:
    """`payload` with one more event, placed as the planner would place it."""
    streams = list(payload.streams)
    if streams and _key(streams[-1]) == key:
        streams[-1] = streams[-1].model_copy(update={"events": [*streams[-1].events, event]})
    else:
        owner, group, stream = key
        streams.append(StreamEvents(owner=owner, log_group=group, log_stream=stream, events=[event]))
    return payload.model_copy(update={"streams": streams})


def _plan(records: Sequence[DecodedRecord], max_payload_bytes: int = 256 * 1024) -> BatchPlan:
    return plan_batch("b-test", records, OWNERS, max_payload_bytes=max_payload_bytes)


# -- batch ids -------------------------------------------------------------------------------


def test_batch_id_is_the_same_for_the_same_records_in_any_order() -> None:
    ids = ["shardId-0:1", "shardId-0:2", "shardId-0:3"]

    assert compute_batch_id(ids) == compute_batch_id(reversed(ids))
    assert compute_batch_id(ids).startswith("b-")


def test_batch_id_differs_for_different_records() -> None:
    assert compute_batch_id(["shardId-0:1", "shardId-0:2"]) != compute_batch_id(["shardId-0:1", "shardId-0:3"])
    assert compute_batch_id(["shardId-0:1"]) != compute_batch_id(["shardId-0:1", "shardId-0:2"])


def test_subtask_ids_are_deterministic_per_customer_and_chunk() -> None:
    assert subtask_id_for("acme", 0) == subtask_id_for("acme", 0) == "acme#0000"
    assert subtask_id_for("acme", 1) != subtask_id_for("acme", 0)
    assert subtask_id_for("globex", 0) != subtask_id_for("acme", 0)


# -- grouping --------------------------------------------------------------------------------


def test_two_owners_of_one_customer_share_one_subtask() -> None:
    # Given events from both of acme's accounts and from globex
    payments = f.decoded_record(f.logs_message(ACME_PAYMENTS, ["p1", "p2"], log_group="/payments"))
    web = f.decoded_record(f.logs_message(ACME_WEB, ["w1"], log_group="/web"))
    globex = f.decoded_record(f.logs_message(GLOBEX, ["g1"]))

    # When the batch is planned
    plan = _plan([payments, web, globex])

    # Then acme gets one sub-task with both owners' streams and globex its own
    assert [s.customer_id for s in plan.subtasks] == ["acme", "globex"]
    acme = plan.subtasks[0]
    assert [(s.owner, s.log_group, [e.message for e in s.events]) for s in acme.payload().streams] == [
        (ACME_PAYMENTS, "/payments", ["p1", "p2"]),
        (ACME_WEB, "/web", ["w1"]),
    ]
    assert acme.sequence_numbers == {payments.sequence_number, web.sequence_number}
    assert plan.subtasks[1].sequence_numbers == {globex.sequence_number}
    assert all(s.batch_id == s.payload().batch_id == "b-test" for s in plan.subtasks)
    assert [s.payload().subtask_id for s in plan.subtasks] == ["acme#0000", "globex#0000"]


def test_unclaimed_owners_are_counted_and_never_planned() -> None:
    # Given a stranger's events next to a customer's
    plan = _plan(
        [
            f.decoded_record(f.logs_message(STRANGER, ["s1", "s2", "s3"])),
            f.decoded_record(f.logs_message(ACME_WEB, ["w1"])),
        ]
    )

    # Then the stranger is counted, not routed anywhere
    assert plan.events == 4
    assert plan.unclaimed_events == 3
    assert plan.claimed_events == 1
    assert plan.unclaimed_owners == {STRANGER}
    assert {s.owner for st_ in plan.subtasks for s in st_.payload().streams} == {ACME_WEB}


def test_control_messages_are_skipped() -> None:
    plan = _plan([f.decoded_record(f.control_message()), f.decoded_record(f.logs_message(GLOBEX, ["g1"]))])

    assert plan.events == 1
    assert plan.unclaimed_events == 0
    assert plan.unclaimed_owners == frozenset()
    assert [s.customer_id for s in plan.subtasks] == ["globex"]


def test_no_claimed_events_means_no_subtasks() -> None:
    plan = _plan([f.decoded_record(f.logs_message(STRANGER, ["s1"])), f.decoded_record(f.control_message())])

    assert plan.subtasks == []


def test_event_order_within_a_stream_is_kept_across_records() -> None:
    # Given one stream's events split over two records, with timestamps out of order
    first = f.decoded_record(
        f.logs_message(GLOBEX, events=[f.event("c", timestamp=3), f.event("a", timestamp=1)]),
    )
    second = f.decoded_record(f.logs_message(GLOBEX, events=[f.event("b", timestamp=2)]))

    # When planned
    plan = _plan([first, second])

    # Then the events keep arrival order (the parser, not routing, decides what order means)
    assert [e.message for _, e in _events_of(plan.subtasks)] == ["c", "a", "b"]


def test_the_same_input_always_gives_the_same_plan() -> None:
    records = [f.decoded_record(f.logs_message(owner, [f"m{owner}"] * 3)) for owner in OWNERS]

    assert _plan(records, 600) == _plan(records, 600)


# -- chunking --------------------------------------------------------------------------------


def test_a_customers_events_are_chunked_under_the_limit_exactly() -> None:
    # Given 60 events full of characters JSON escapes or UTF-8 widens, over two streams and three records
    limit = 1500
    records = [
        f.decoded_record(
            f.logs_message(
                owner,
                [f"{i:03d} {TRICKY * (1 + i % 5)}" for i in range(start, start + 20)],
                log_stream=f"2026/11/28/[$LATEST]{owner[-2:]}",
            )
        )
        for owner, start in ((ACME_PAYMENTS, 0), (ACME_WEB, 20), (ACME_PAYMENTS, 40))
    ]
    event_records = {e.id: r.sequence_number for r in records for e in r.message.log_events()}
    events_in = [
        (r.message.owner, r.message.log_group, r.message.log_stream, e) for r in records for e in r.message.log_events()
    ]

    # When planned with a small payload limit
    plan = _plan(records, max_payload_bytes=limit)

    # Then there are several sub-tasks, each encoded payload within the limit, measured by the real encoder
    assert len(plan.subtasks) > 2
    assert plan.oversized == []
    for subtask in plan.subtasks:
        encoded = _encoded(subtask)
        assert len(encoded) <= limit
        assert SubTaskPayload.model_validate(json.loads(encoded)) == subtask.payload()

    # And no event is lost, duplicated or reordered
    assert [(*k, e) for k, e in _events_of(plan.subtasks)] == events_in

    # And each sub-task names exactly the records its events came from
    for subtask in plan.subtasks:
        assert subtask.sequence_numbers == {event_records[e.id] for _, e in _events_of([subtask])}

    # And each chunk is full: the next event would not have fitted
    for current, following in zip(plan.subtasks, plan.subtasks[1:], strict=False):
        key, event = _events_of([following])[0]
        assert len(encode_payload(_with_event(current.payload(), key, event))) > limit

    # And the chunk ids are deterministic
    assert [s.payload().subtask_id for s in plan.subtasks] == [
        subtask_id_for("acme", i) for i in range(len(plan.subtasks))
    ]


_NAMES = st.one_of(
    st.sampled_from([TRICKY, "\x00owner\x00", "\x00log_group\x00", "\x00log_stream\x00", '"events":[]', ""]),
    st.text(),
)


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.tuples(_NAMES, _NAMES, _NAMES), min_size=1, max_size=4),
    batch_id=st.one_of(st.just("\x00batch_id\x00"), st.text()),
    customer_id=st.one_of(st.just('"streams":[]'), st.text(min_size=1)),
)
def test_payloads_with_any_names_are_written_as_the_payload_encoder_writes_them(
    names: list[tuple[str, str, str]], batch_id: str, customer_id: str
) -> None:
    # Given records whose owner, log group and log stream, and a batch and customer whose ids, hold any
    # text: characters JSON escapes, wide ones, the markers the planner writes around, JSON-looking text
    records = [
        f.decoded_record(f.logs_message(owner, [f"event {i}"], log_group=group, log_stream=stream))
        for i, (owner, group, stream) in enumerate(names)
    ]

    # When planned, every owner the customer's
    plan = plan_batch(batch_id, records, {owner: customer_id for owner, _, _ in names}, max_payload_bytes=256 * 1024)

    # Then each payload is byte for byte what the encoder writes, its streams named as they came
    assert [k for k, _ in _events_of(plan.subtasks)] == names
    for subtask in plan.subtasks:
        _encoded(subtask)
        assert (subtask.payload().batch_id, subtask.payload().customer_id) == (batch_id, customer_id)


def test_an_event_larger_than_the_limit_is_set_aside() -> None:
    # Given a huge event between two small ones
    record = f.decoded_record(f.logs_message(GLOBEX, ["small 1", "x" * 5000, "small 2"]))
    huge = record.message.log_events()[1]

    # When planned with a 1 KB limit
    plan = _plan([record], max_payload_bytes=1000)

    # Then the huge event is reported as oversized and travels in no sub-task
    assert [(o.event_id, o.customer_id, o.owner, o.sequence_number) for o in plan.oversized] == [
        (huge.id, "globex", GLOBEX, record.sequence_number)
    ]
    assert plan.oversized[0].size > 5000
    assert [e.message for _, e in _events_of(plan.subtasks)] == ["small 1", "small 2"]
    assert all(len(_encoded(s)) <= 1000 for s in plan.subtasks)


# -- properties ------------------------------------------------------------------------------

_messages = st.text(
    alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8")),
    max_size=300,
)
_records = st.lists(
    st.tuples(
        st.sampled_from([ACME_PAYMENTS, ACME_WEB, GLOBEX, STRANGER]),
        st.sampled_from(["a", "b"]),
        st.lists(_messages, max_size=12),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records, limit=st.integers(min_value=120, max_value=4000))
def test_planning_keeps_every_event_in_order_and_every_payload_within_the_limit(
    records: list[tuple[str, str, list[str]]], limit: int
) -> None:
    # Given random records with unique event ids
    counter = iter(range(1_000_000))
    decoded = [
        f.decoded_record(
            f.logs_message(
                owner,
                log_stream=f"stream-{stream}",
                events=[f.event(m, event_id=f"{next(counter):056d}") for m in messages],
            ),
            sequence_number=str(index),
        )
        for index, (owner, stream, messages) in enumerate(records)
    ]

    # When planned
    plan = _plan(decoded, max_payload_bytes=limit)

    # Then every payload fits
    assert all(len(_encoded(s)) <= limit for s in plan.subtasks)

    # And the claimed events, minus the oversized ones, are planned exactly once with their stream
    oversized = {o.event_id for o in plan.oversized}
    expected: dict[StreamKey, list[LogEvent]] = {}
    for record in decoded:
        message = record.message
        if message.owner in OWNERS:
            key = (message.owner, message.log_group, message.log_stream)
            expected.setdefault(key, []).extend(e for e in message.log_events() if e.id not in oversized)
    planned: dict[StreamKey, list[LogEvent]] = {}
    for key, event in _events_of(plan.subtasks):
        planned.setdefault(key, []).append(event)
    assert Counter(e.id for events in planned.values() for e in events) == Counter(
        e.id for events in expected.values() for e in events
    )

    # And within each stream the order is kept
    assert {k: v for k, v in expected.items() if v} == planned

    # And a customer's sub-tasks only carry that customer's owners, records named exactly
    by_event = {e.id: r.sequence_number for r in decoded for e in r.message.log_events()}
    for subtask in plan.subtasks:
        assert {s.owner for s in subtask.payload().streams} <= {
            o for o, c in OWNERS.items() if c == subtask.payload().customer_id
        }
        assert subtask.sequence_numbers == {by_event[e.id] for _, e in _events_of([subtask])}

    # And each chunk is full: the event that followed its last one in the input would not have fitted
    for customer_id in {s.customer_id for s in plan.subtasks}:
        inputs = [
            ((r.message.owner, r.message.log_group, r.message.log_stream), e)
            for r in decoded
            if OWNERS.get(r.message.owner) == customer_id
            for e in r.message.log_events()
        ]
        position = {e.id: i for i, (_, e) in enumerate(inputs)}
        chunks = [s for s in plan.subtasks if s.customer_id == customer_id]
        for chunk in chunks[:-1]:
            key, event = inputs[position[_events_of([chunk])[-1][1].id] + 1]
            assert len(encode_payload(_with_event(chunk.payload(), key, event))) > limit

    # And the counts add up
    assert plan.events == sum(len(r.message.log_events()) for r in decoded)
    assert plan.unclaimed_events == sum(len(r.message.log_events()) for r in decoded if r.message.owner == STRANGER)
