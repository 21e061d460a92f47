"""`logfan customers keys create|list|revoke`: the API keys customers call the rules API with.

`create` prints the key once, alone on stdout (`KEY=$(logfan customers keys create --customer acme)`);
only its SHA-256 is stored, so a lost key is revoked and replaced, never shown again. The commands
talk to the config table like the other `customers` commands: the default credentials chain, or
`--endpoint-url` / AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pipeline.adapters.dynamodb_api_keys import DynamoDBApiKeyStore, api_key_store
from pipeline.api_keys import ApiKey, issue_key, parse_key
from pipeline.config import ApiKeySettings

__all__ = ["key_store", "register"]


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def key_store(args: argparse.Namespace) -> DynamoDBApiKeyStore:
    """The key store of the table and endpoint the command line names (`--table`, `--endpoint-url`, `--region`)."""
    table = getattr(args, "table", None) or ApiKeySettings().config_table
    return api_key_store(table, region=args.region, endpoint_url=args.endpoint_url)


def _when(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(key: ApiKey) -> str:
    return f"revoked {_when(key.revoked_at)}" if key.revoked_at is not None else "active"


def _create(args: argparse.Namespace) -> int:
    issued = issue_key(args.customer, now_ms=_now_ms())
    key_store(args).create_key(issued.stored)
    _write(issued.key)
    sys.stderr.write(
        f"created key {issued.stored.key_id} for customer {args.customer}; this is the only time it is shown "
        "(logfan keeps its SHA-256). Send it as `Authorization: Bearer <key>`.\n"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = key_store(args).list_keys(args.customer)
    _write(f"{'key id':16}  {'ends':6}  {'created':20}  status")
    for key in keys:
        _write(f"{key.key_id:16}  ...{key.last4}  {_when(key.created_at):20}  {_status(key)}")
    _write(f"{len(keys)} key(s), {sum(not key.revoked for key in keys)} active")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    presented = parse_key(args.key_id)
    key_id = presented.key_id if presented is not None else args.key_id
    revoked = key_store(args).revoke_key(args.customer, key_id, now_ms=_now_ms())
    _write(f"key {key_id} of {args.customer} {'revoked' if revoked else 'was already revoked'}")
    return 0


def _command(actions: Any, name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--customer", required=True, metavar="C", help="customer id")
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    parser.add_argument("--table", default=None, help="config table (default: LOGFAN_CONFIG_TABLE, else logfan-config)")
    parser.set_defaults(run=run)
    return parser


def register(subcommands: Any) -> None:
    """Add `keys` under the `customers` command (registered before this, by `pipeline.cli_rules`)."""
    customers: argparse.ArgumentParser = subcommands.choices["customers"]
    customer_actions = next(a for a in customers._actions if isinstance(a, argparse._SubParsersAction))
    keys = customer_actions.add_parser(
        "keys", help="a customer's rules-API keys", description="API keys a customer calls the rules API with"
    )
    actions = keys.add_subparsers(dest="keys_command", required=True)
    _command(actions, "create", _create, "create a key and print it (once: only its hash is kept)")
    _command(actions, "list", _list, "list a customer's keys: id, last characters, created, revoked")
    revoke = _command(actions, "revoke", _revoke, "revoke a key; requests with it are refused from now on")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (`keys list`), or the key itself")
