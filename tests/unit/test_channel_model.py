"""The Channel model: which fields each type needs, and what never leaves it (URL, secret, health)."""

from __future__ import annotations

import pytest

from pipeline.errors import RejectedError
from pipeline.models import Channel, ChannelType
from pipeline.rules_service import validated

URL = "https://alerts.acme.example/s3cr3t-path"
SECRET = "lfs_model-secret-0123456789"


def test_a_webhook_secret_and_delivery_health_stay_out_of_dumps_and_reprs() -> None:
    channel = Channel(
        channel_id="hook",
        type=ChannelType.WEBHOOK,
        url=URL,
        secret=SECRET,
        failures=2,
        last_error="HTTP 410",
        last_failed_at=5,
    )

    assert channel.has_secret
    assert channel.model_dump(exclude_none=True) == {"channel_id": "hook", "type": ChannelType.WEBHOOK, "url": URL}
    assert SECRET not in repr(channel) and URL not in repr(channel)
    assert Channel.model_validate({**channel.model_dump(), "secret": SECRET}).secret == SECRET


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "eventbridge"}, "needs a bus"),
        ({"type": "slack", "url": URL, "secret": SECRET}, "only webhook channels have a signing secret"),
        ({"type": "webhook", "url": URL, "bus": "default"}, "bus and detail_type are for eventbridge"),
        ({"type": "sns", "topic_arn": "arn:aws:sns:us-east-1:111122223333:t", "detail_type": "x"}, "eventbridge"),
    ],
)
def test_each_type_takes_its_own_fields(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Channel.model_validate({"channel_id": "c", **fields})


def test_a_short_secret_is_refused_without_repeating_it() -> None:
    with pytest.raises(RejectedError) as raised:
        validated(Channel, {"channel_id": "hook", "type": "webhook", "url": URL, "secret": "tooshort"})

    assert raised.value.problems == ["secret: String should have at least 16 characters"]
    assert "tooshort" not in str(raised.value)
