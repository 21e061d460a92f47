"""Asynchronous Lambda invocations (the `FunctionInvoker` port on AWS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.config import LAMBDA_ASYNC_PAYLOAD_LIMIT
from pipeline.errors import InvokeError

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

__all__ = ["LambdaInvoker"]


IAM_ACTIONS = frozenset({"lambda:InvokeFunction"})
"""IAM actions this adapter's calls need."""


class LambdaInvoker:
    def __init__(self, client: LambdaClient, max_payload_bytes: int = LAMBDA_ASYNC_PAYLOAD_LIMIT) -> None:
        self._client = client
        self._max_payload_bytes = max_payload_bytes

    def invoke_async(self, function_name: str, payload: bytes) -> None:
        if len(payload) > self._max_payload_bytes:
            raise InvokeError(
                f"{function_name}: payload of {len(payload)} bytes exceeds the {self._max_payload_bytes}-byte async limit"
            )
        try:
            response = self._client.invoke(FunctionName=function_name, InvocationType="Event", Payload=payload)
        except (ClientError, BotoCoreError) as exc:
            raise InvokeError(f"{function_name}: {exc}") from exc
        if response.get("StatusCode") != 202:
            raise InvokeError(f"{function_name}: unexpected status {response.get('StatusCode')}")
