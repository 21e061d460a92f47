"""DynamoDBConfigStore on moto: customers, the accounts they claim, their channels and rules."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.adapters.dynamodb_common import BATCH_GET_LIMIT
from pipeline.adapters.dynamodb_config import DynamoDBConfigStore
from pipeline.errors import StoreError
from pipeline.local.aws import LocalAws
from pipeline.models import Channel, ChannelType, Customer
from tests import factories as f
from tests.faults import ClientProxy, unprocessed_keys


def _store(client: Any) -> DynamoDBConfigStore:
    return DynamoDBConfigStore(client, "logfan-config", sleep=lambda _: None)


def _accounts(prefix: int, count: int) -> list[str]:
    return [f"{prefix:04d}{index:08d}" for index in range(count)]


def _key_counts(proxy: ClientProxy) -> list[int]:
    return [
        len(table_request["Keys"])
        for request in proxy.requests("batch_get_item")
        for table_request in request["RequestItems"].values()
    ]


def test_put_customer_claims_its_accounts(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)

    store.put_customer(f.customer("acme", ["111122223333", "444455556666"]))
    store.put_customer(f.customer("globex", ["777788889999"]))

    assert store.customers_for_owners(["111122223333", "444455556666", "777788889999", "999900001111"]) == {
        "111122223333": "acme",
        "444455556666": "acme",
        "777788889999": "globex",
    }


def test_customers_for_more_than_100_owners_in_calls_of_at_most_100_keys(aws: LocalAws) -> None:
    # Given 120 claimed accounts over two customers, and 30 accounts nobody claims
    store = _store(aws.dynamodb)
    acme, globex, unknown = _accounts(1, 60), _accounts(2, 60), _accounts(3, 30)
    store.put_customer(f.customer("acme", acme))
    store.put_customer(f.customer("globex", globex))
    proxy = ClientProxy(aws.dynamodb)

    # When
    found = _store(proxy).customers_for_owners(acme + globex + unknown)

    # Then
    assert found == {**dict.fromkeys(acme, "acme"), **dict.fromkeys(globex, "globex")}
    assert _key_counts(proxy) == [100, 50]
    assert max(_key_counts(proxy)) <= BATCH_GET_LIMIT


def test_customers_for_owners_retries_unprocessed_keys(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    accounts = _accounts(1, 30)
    store.put_customer(f.customer("acme", accounts))
    proxy = ClientProxy(aws.dynamodb, batch_get_item=unprocessed_keys(calls=1, keep=10))

    found = _store(proxy).customers_for_owners(accounts)

    assert found == dict.fromkeys(accounts, "acme")
    assert _key_counts(proxy) == [30, 20]


def test_an_account_claimed_by_another_customer_fails_the_whole_write(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.put_customer(f.customer("acme", ["111122223333"]))

    with pytest.raises(StoreError, match=r"111122223333.*another customer") as raised:
        store.put_customer(f.customer("globex", ["777788889999", "111122223333"]))

    assert "777788889999" not in str(raised.value)
    assert store.load_customer("globex") is None
    assert store.customers_for_owners(["111122223333", "777788889999"]) == {"111122223333": "acme"}


def test_dropping_an_account_releases_it(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.put_customer(f.customer("acme", ["111122223333", "444455556666"]))

    store.put_customer(f.customer("acme", ["111122223333"]))
    store.put_customer(f.customer("globex", ["444455556666"]))

    assert store.customers_for_owners(["111122223333", "444455556666"]) == {
        "111122223333": "acme",
        "444455556666": "globex",
    }


def test_load_customer_returns_its_channels_and_rules_sorted(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    channels = [
        Channel(channel_id="ops", type=ChannelType.SLACK, url="https://hooks.slack.com/services/T/B/X"),
        Channel(channel_id="pager", type=ChannelType.SNS, topic_arn="arn:aws:sns:us-east-1:111122223333:pager"),
    ]
    customer = Customer(customer_id="acme", name="Acme", accounts=["111122223333"], channels=channels)
    store.put_customer(customer)
    store.put_customer(f.customer("acmex", ["444455556666"]))
    for rule_id in ("timeouts", "errors", "oom"):
        store.put_rule(f.rule("acme", rule_id, rule_id.upper(), channel="pager"))
    store.put_rule(f.rule("acmex", "other", "OTHER"))

    config = store.load_customer("acme")

    assert config is not None
    assert config.customer == customer
    assert [rule.rule_id for rule in config.rules] == ["errors", "oom", "timeouts"]
    assert config.channel("pager") == channels[1]
    assert store.load_customer("nobody") is None


def test_put_rule_overwrites_the_rule(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    store.put_customer(f.customer("acme", ["111122223333"]))
    store.put_rule(f.rule("acme", "errors", "ERROR"))

    store.put_rule(f.rule("acme", "errors", "FATAL", "PANIC", version=2, ignore_case=True))

    config = store.load_customer("acme")
    assert config is not None
    assert config.rules == (f.rule("acme", "errors", "FATAL", "PANIC", version=2, ignore_case=True),)


def test_an_account_listed_twice_is_claimed_once(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)

    store.put_customer(f.customer("acme", ["111122223333", "444455556666", "111122223333"]))

    assert store.customers_for_owners(["111122223333", "444455556666"]) == {
        "111122223333": "acme",
        "444455556666": "acme",
    }


def test_a_customer_claiming_more_accounts_than_one_transaction_holds_is_refused(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)

    with pytest.raises(StoreError, match=r"100 accounts exceed what one transaction can claim \(99\)"):
        store.put_customer(f.customer("acme", _accounts(1, 100)))

    assert store.load_customer("acme") is None


# -- channel secrets and delivery health --------------------------------------------------------

HOOK_SECRET = "lfs_stored-secret-0123456789"


def _hooked(store: DynamoDBConfigStore) -> None:
    store.put_customer(
        Customer(
            customer_id="acme",
            accounts=["111122223333"],
            channels=[
                Channel(channel_id="a-slack", type=ChannelType.SLACK, url="https://hooks.slack.com/services/T/B/X"),
                Channel(
                    channel_id="hook", type=ChannelType.WEBHOOK, url="https://alerts.acme.example/x", secret=HOOK_SECRET
                ),
            ],
        )
    )


def test_a_webhook_secret_is_stored_and_read_back_but_never_dumped(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)

    _hooked(store)
    channel = store.get_channel("acme", "hook")

    assert channel is not None and channel.secret == HOOK_SECRET
    assert "secret" not in channel.model_dump()
    assert HOOK_SECRET not in repr(channel)
    loaded = store.load_customer("acme")
    assert loaded is not None and loaded.channel("hook") == channel


def test_a_permanent_delivery_failure_is_recorded_on_the_channel_and_counted(aws: LocalAws) -> None:
    # Given a customer with two channels
    store = _store(aws.dynamodb)
    _hooked(store)

    # When deliveries to one of them fail for good twice
    store.record_delivery_failure("acme", "hook", error="webhook channel hook answered HTTP 410", at_ms=1_000)
    store.record_delivery_failure("acme", "hook", error="webhook channel hook answered HTTP 404", at_ms=2_000)

    # Then that channel holds the last error, when, and how many; the other is untouched
    hook, slack = store.get_channel("acme", "hook"), store.get_channel("acme", "a-slack")
    assert hook is not None and slack is not None
    assert (hook.failures, hook.last_failed_at, hook.last_error) == (2, 2_000, "webhook channel hook answered HTTP 404")
    assert hook.secret == HOOK_SECRET
    assert (slack.failures, slack.last_error) == (None, None)


def test_an_edit_of_the_channel_clears_its_failures_and_other_writes_keep_them(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    _hooked(store)
    store.record_delivery_failure("acme", "hook", error="HTTP 410", at_ms=1_000)
    store.record_delivery_failure("acme", "a-slack", error="HTTP 404", at_ms=1_000)

    # When the webhook is edited, and the profile rewritten with what it holds
    store.put_channel("acme", Channel(channel_id="hook", type=ChannelType.WEBHOOK, url="https://alerts.acme.example/y"))
    customer = store.get_customer("acme")
    assert customer is not None
    store.put_customer(customer.model_copy(update={"name": "Acme"}))

    # Then the edited channel's record is gone, the other's kept
    hook, slack = store.get_channel("acme", "hook"), store.get_channel("acme", "a-slack")
    assert hook is not None and slack is not None
    assert (hook.failures, hook.last_error, hook.last_failed_at) == (None, None, None)
    assert (slack.failures, slack.last_error) == (1, "HTTP 404")


def test_a_recorded_error_never_keeps_the_channel_url_or_secret(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    _hooked(store)

    store.record_delivery_failure(
        "acme", "hook", error=f"POST https://alerts.acme.example/x failed, key {HOOK_SECRET}", at_ms=1
    )

    hook = store.get_channel("acme", "hook")
    assert hook is not None and hook.last_error == "POST *** failed, key ***"


def test_a_failure_for_a_channel_or_customer_that_is_gone_is_ignored(aws: LocalAws) -> None:
    store = _store(aws.dynamodb)
    _hooked(store)

    store.record_delivery_failure("acme", "gone", error="x", at_ms=1)
    store.record_delivery_failure("nobody", "hook", error="x", at_ms=1)

    assert all(c.failures is None for c in store.list_channels("acme"))


def test_a_failure_recorded_while_the_channels_move_lands_on_the_right_channel(aws: LocalAws) -> None:
    # Given a customer whose channel list changes (a channel added before "hook") just as a failure is recorded
    store = _store(aws.dynamodb)
    _hooked(store)
    moved = [False]

    def concurrent_edit(call: Any, kwargs: dict[str, Any]) -> Any:
        if not moved[0] and "last_error" in kwargs["UpdateExpression"]:
            moved[0] = True
            store.put_channel("acme", Channel(channel_id="a-bus", type=ChannelType.EVENTBRIDGE, bus="default"))
        return call(**kwargs)

    proxy = ClientProxy(aws.dynamodb, update_item=concurrent_edit)

    # When the failure is recorded through that client
    _store(proxy).record_delivery_failure("acme", "hook", error="HTTP 410", at_ms=9)

    # Then the first, stale attempt changed nothing and the second found the channel where it moved
    channels = {c.channel_id: c for c in store.list_channels("acme")}
    assert [c.failures for c in channels.values()] == [None, None, 1]
    assert channels["hook"].last_error == "HTTP 410"
    assert len([r for r in proxy.requests("update_item") if "last_error" in r["UpdateExpression"]]) == 2
