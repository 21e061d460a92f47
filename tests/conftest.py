"""Shared fixtures. AWS is always moto: `mock_aws` starts before any client is made."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pipeline.local.aws import LocalAws, local_aws

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    """A fresh emulated account with logfan's tables, stream and poison queue."""
    with local_aws() as resources:
        yield resources
