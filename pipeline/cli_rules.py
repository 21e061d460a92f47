"""`logfan customers|channels|rules|api|local`: manage customers' rules, serve the rules API, run local AWS.

Every command goes through `RulesService` (the one the rules API uses) over the config table of the
default credentials chain, or of `--endpoint-url` / AWS_ENDPOINT_URL (`logfan local up` prints one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from pipeline.adapters.dynamodb_config import config_store
from pipeline.config import ResourceNames, RulesSettings
from pipeline.errors import RejectedError
from pipeline.models import Channel, ChannelType, Customer, Rule
from pipeline.rules_file import dump_rules_file, load_rules_file
from pipeline.rules_service import RulesService, mask_url, secret_hint, validated, vetting_limits

__all__ = ["register"]

_Model = TypeVar("_Model", bound=BaseModel)


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _settings(args: argparse.Namespace) -> RulesSettings:
    settings = RulesSettings()
    overrides: dict[str, Any] = {}
    if args.table:
        overrides["config_table"] = args.table
    if getattr(args, "allow_loopback_channels", False):
        overrides["allow_loopback_channels"] = True
    return settings.model_copy(update=overrides) if overrides else settings


def _service(args: argparse.Namespace) -> RulesService:
    settings = _settings(args)
    store = config_store(settings.config_table, region=args.region, endpoint_url=args.endpoint_url)
    return RulesService(store, vetting_limits(settings))


def _model(model: type[_Model], **data: Any) -> _Model:
    return validated(model, data)


def _dump(document: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _target(channel: Channel) -> str:
    if channel.type is ChannelType.EVENTBRIDGE:
        return f"{channel.bus} ({channel.detail_type or 'logfan.notification'})"
    return str(mask_url(channel.url) or channel.topic_arn)


def _health(channel: Channel) -> str:
    if not channel.failures:
        return "ok"
    return f"{channel.failures} failure(s), last at {channel.last_failed_at} ms: {channel.last_error}"


def _show_new_secret(label: str, secret: str) -> None:
    _write(f"signing secret for {label} (shown once, store it now): {secret}")


# -- customers ---------------------------------------------------------------------------------
def _customers_add(args: argparse.Namespace) -> int:
    _model(Customer, customer_id=args.customer_id, accounts=args.account or [])
    customer = _service(args).add_customer(
        args.customer_id, name=args.name, accounts=args.account or [], principals=args.principal or []
    )
    _write(f"customer {customer.customer_id}: accounts {', '.join(customer.accounts) or '-'}")
    return 0


def _customers_list(args: argparse.Namespace) -> int:
    customers = _service(args).list_customers()
    _write(f"{'customer':20}  {'name':24}  {'accounts':28}  channels")
    for customer in customers:
        channels = ", ".join(c.channel_id for c in customer.channels) or "-"
        _write(
            f"{customer.customer_id:20}  {customer.name or '-':24}  {','.join(customer.accounts) or '-':28}  {channels}"
        )
    _write(f"{len(customers)} customer(s)")
    return 0


# -- channels ----------------------------------------------------------------------------------
def _channels_add(args: argparse.Namespace) -> int:
    channel = _model(
        Channel,
        channel_id=args.channel_id,
        type=args.type,
        url=args.url,
        topic_arn=args.topic_arn,
        bus=args.bus,
        detail_type=args.detail_type,
        secret=args.secret,
    )
    write = _service(args).put_channel(args.customer, channel, rotate_secret=args.rotate_secret)
    _write(f"channel {args.customer}/{channel.channel_id} {'added' if write.created else 'replaced'}")
    if write.new_secret:
        _show_new_secret(f"{args.customer}/{channel.channel_id}", write.new_secret)
    return 0


def _channels_list(args: argparse.Namespace) -> int:
    channels = _service(args).list_channels(args.customer)
    _write(f"{'channel':20}  {'type':11}  {'signed':8}  {'target':48}  delivery")
    for channel in channels:
        signed = (secret_hint(channel.secret) or "no") if channel.type is ChannelType.WEBHOOK else "-"
        _write(
            f"{channel.channel_id:20}  {channel.type.value:11}  {signed:8}  {_target(channel):48}  {_health(channel)}"
        )
    _write(f"{len(channels)} channel(s), {sum(bool(c.failures) for c in channels)} failing")
    return 0


def _channels_remove(args: argparse.Namespace) -> int:
    _service(args).remove_channel(args.customer, args.channel_id)
    _write(f"channel {args.customer}/{args.channel_id} removed")
    return 0


# -- rules -------------------------------------------------------------------------------------
def _rules_add(args: argparse.Namespace) -> int:
    rule = _model(
        Rule,
        customer_id=args.customer,
        rule_id=args.rule_id,
        name=args.name or "",
        patterns=args.pattern,
        match=args.match,
        ignore_case=args.ignore_case,
        log_groups=args.log_group or [],
        channel=args.channel,
    )
    service = _service(args)
    if args.replace or args.expected_version is not None:
        stored, created = service.put_rule(rule, args.expected_version)
    else:
        stored, created = service.create_rule(rule), True
    _write(f"rule {rule.customer_id}/{rule.rule_id} {'added' if created else 'updated'} (version {stored.version})")
    return 0


def _rules_list(args: argparse.Namespace) -> int:
    rules = _service(args).list_rules(args.customer)
    _write(f"{'rule':28}  {'ver':>3}  {'status':11}  {'channel':16}  {'match':5}  patterns")
    for rule in rules:
        patterns = "  ".join(repr(p) for p in rule.patterns)
        _write(f"{rule.rule_id:28}  {rule.version:>3}  {rule.status:11}  {rule.channel:16}  {rule.match:5}  {patterns}")
        if rule.quarantined:
            _write(
                f"{'':28}  quarantined at {rule.quarantined_at} ms: {rule.quarantine_reason} (edit the rule to lift it)"
            )
    _write(f"{len(rules)} rule(s), {sum(r.quarantined for r in rules)} quarantined")
    return 0


def _rules_show(args: argparse.Namespace) -> int:
    rule = _service(args).get_rule(args.customer, args.rule_id)
    sys.stdout.write(_dump(rule.model_dump(mode="json"), args.format))
    return 0


def _rules_remove(args: argparse.Namespace) -> int:
    _service(args).remove_rule(args.customer, args.rule_id)
    _write(f"rule {args.customer}/{args.rule_id} removed")
    return 0


def _rules_import(args: argparse.Namespace) -> int:
    report = _service(args).import_file(load_rules_file(args.file))
    for label, secret in sorted(report.secrets.items()):
        _show_new_secret(label, secret)
    for label in report.created:
        _write(f"created    {label}")
    for label in report.updated:
        _write(f"updated    {label}")
    for label in report.unchanged:
        _write(f"unchanged  {label}")
    _write(
        f"{len(report.customers)} customer(s) written; rules: {len(report.created)} created, "
        f"{len(report.updated)} updated, {len(report.unchanged)} unchanged"
    )
    return 0


def _rules_export(args: argparse.Namespace) -> int:
    rules_file = _service(args).export_file(args.customer or [])
    text = dump_rules_file(rules_file)
    if args.format == "json":
        text = json.dumps(yaml.safe_load(text), indent=2) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        _write(f"{len(rules_file.customers)} customer(s), {len(rules_file.rules)} rule(s) -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    try:
        lines = args.file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RejectedError(f"cannot read {args.file}: {exc.strerror}") from None
    settings = _settings(args)
    report = _service(args).test_rules(
        args.customer, lines, rule_id=args.rule, log_group=args.log_group, timeout_ms=settings.rule_timeout_ms
    )
    _write(f"{report.lines} line(s), log group {args.log_group}")
    _write(f"{'rule':28}  {'status':11}  {'fired':>5}  {'time ms':>9}  {'timeouts':>8}  lines")
    for result in report.results:
        shown = ",".join(str(n) for n in result.matched_lines[:10]) + (" ..." if len(result.matched_lines) > 10 else "")
        status = result.rule.status if result.applies else "n/a (group)"
        _write(
            f"{result.rule.rule_id:28}  {status:11}  {len(result.matched_lines):>5}  {result.spent_ms:>9.2f}  "
            f"{result.timeouts:>8}  {shown or '-'}"
        )
    return 0


# -- local AWS and the API on this machine -----------------------------------------------------
def _local_up(args: argparse.Namespace) -> int:
    from pipeline.local.environment import start

    environment = start(args.state_dir, port=args.port, names=ResourceNames(args.prefix))
    _write(f"moto server (pid {environment.pid}) on {environment.endpoint_url}; state in {environment.state_dir}")
    _write(f"tables, stream and queue for prefix {args.prefix!r} are ready. Now run:")
    _write()
    for name, value in environment.exports().items():
        _write(f"export {name}={value}")
    return 0


def _local_down(args: argparse.Namespace) -> int:
    from pipeline.local.environment import stop

    pid = stop(args.state_dir)
    _write(f"moto server (pid {pid}) stopped" if pid else "no local environment is running")
    return 0


def _api_serve(args: argparse.Namespace) -> int:
    from pipeline.cli_keys import key_store
    from pipeline.local.api_server import serve

    serve(
        _service(args),
        port=args.port,
        on_ready=lambda url: _write(f"rules API on {url} (Ctrl-C stops it)"),
        keys=key_store(args),
    )
    return 0


def _api_openapi(args: argparse.Namespace) -> int:
    from pipeline.rules_http import openapi_document

    text = openapi_document()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        _write(f"OpenAPI document -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


# -- wiring ------------------------------------------------------------------------------------
def _aws(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    parser.add_argument("--table", default=None, help="config table (default: LOGFAN_CONFIG_TABLE, else logfan-config)")


def _command(actions: Any, name: str, run: Any, help_text: str, *, customer: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    if customer:
        parser.add_argument("--customer", required=True, metavar="C", help="customer id")
    _aws(parser)
    parser.set_defaults(run=run)
    return parser


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the pidfile and log live (default LOGFAN_STATE_DIR or ~/.logfan)",
    )


def register(subcommands: Any) -> None:
    """Add `customers`, `channels`, `rules`, `api` and `local` to the `logfan` command line."""
    customers = subcommands.add_parser("customers", help="register customers and the AWS accounts they own")
    customer_actions = customers.add_subparsers(dest="customers_command", required=True)
    add = _command(customer_actions, "add", _customers_add, "create a customer or add accounts to one", customer=False)
    add.add_argument("customer_id", metavar="CUSTOMER")
    add.add_argument("--name", default=None)
    add.add_argument("--account", action="append", metavar="ID", help="AWS account whose logs are theirs (repeatable)")
    add.add_argument(
        "--principal", action="append", metavar="ARN", help="IAM role/user ARN that calls the rules API as them"
    )
    _command(customer_actions, "list", _customers_list, "list customers", customer=False)

    channels = subcommands.add_parser("channels", help="a customer's notification channels")
    channel_actions = channels.add_subparsers(dest="channels_command", required=True)
    add = _command(
        channel_actions,
        "add",
        _channels_add,
        "add or replace a channel (https public URL, SNS topic or EventBridge bus); an edit clears its failures",
    )
    add.add_argument("channel_id", metavar="CHANNEL")
    add.add_argument("--type", required=True, choices=[t.value for t in ChannelType])
    add.add_argument("--url", default=None, help="webhook URL (slack, webhook); never printed back")
    add.add_argument("--topic-arn", default=None, help="SNS topic ARN (sns)")
    add.add_argument("--bus", default=None, help="event bus name or ARN (eventbridge)")
    add.add_argument(
        "--detail-type", default=None, help="events' DetailType (eventbridge; default logfan.notification)"
    )
    add.add_argument(
        "--secret",
        default=None,
        help="webhook signing secret (16+ characters); default: keep the current one, or generate one and print it once",
    )
    add.add_argument("--rotate-secret", action="store_true", help="webhook: generate a new signing secret")
    add.add_argument("--allow-loopback-channels", action="store_true", help="local development: allow 127.0.0.1")
    _command(
        channel_actions, "list", _channels_list, "list a customer's channels: targets masked, signing, delivery health"
    )
    remove = _command(channel_actions, "remove", _channels_remove, "remove a channel no rule uses")
    remove.add_argument("channel_id", metavar="CHANNEL")

    rules = subcommands.add_parser("rules", help="a customer's rules: add, list, show, remove, import, export, test")
    actions = rules.add_subparsers(dest="rules_command", required=True)
    add = _command(actions, "add", _rules_add, "register a rule (vetted: compiles, within limits, no blow-up)")
    add.add_argument("rule_id", metavar="RULE")
    add.add_argument("--pattern", action="append", required=True, metavar="REGEX", help="`regex` syntax (repeatable)")
    add.add_argument("--channel", required=True, help="one of the customer's channels")
    add.add_argument("--name", default=None)
    add.add_argument("--match", choices=["any", "all"], default="any", help="any pattern (default) or all of them")
    add.add_argument("--ignore-case", action="store_true")
    add.add_argument("--log-group", action="append", metavar="GLOB", help="only these log groups (repeatable)")
    add.add_argument(
        "--replace", action="store_true", help="replace an existing rule (a new version; lifts quarantine)"
    )
    add.add_argument("--expected-version", type=int, default=None, help="replace only if still at this version")
    _command(actions, "list", _rules_list, "list a customer's rules with version and quarantine status")
    show = _command(actions, "show", _rules_show, "show one rule")
    show.add_argument("rule_id", metavar="RULE")
    show.add_argument("--format", choices=["yaml", "json"], default="yaml")
    remove = _command(actions, "remove", _rules_remove, "delete a rule")
    remove.add_argument("rule_id", metavar="RULE")
    imported = _command(
        actions, "import", _rules_import, "register a rules file (the format replay reads)", customer=False
    )
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument("--allow-loopback-channels", action="store_true", help="local development: allow 127.0.0.1")
    exported = _command(actions, "export", _rules_export, "write customers and rules as a rules file", customer=False)
    exported.add_argument("--customer", action="append", metavar="C", help="only this customer (repeatable)")
    exported.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    exported.add_argument("--format", choices=["yaml", "json"], default="yaml")
    tested = _command(actions, "test", _rules_test, "run a customer's rules over sample lines: what fires, how long")
    tested.add_argument("file", type=Path, metavar="FILE", help="one log line per line")
    tested.add_argument("--rule", default=None, metavar="R", help="only this rule")
    tested.add_argument("--log-group", default="/logfan/test", help="log group the lines are from (for rule globs)")

    api = subcommands.add_parser("api", help="the rules HTTP API on this machine, and its OpenAPI document")
    api_actions = api.add_subparsers(dest="api_command", required=True)
    serve = _command(api_actions, "serve", _api_serve, "serve the rules API on 127.0.0.1 (local use)", customer=False)
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--allow-loopback-channels", action="store_true", help="local development: allow 127.0.0.1")
    openapi = api_actions.add_parser("openapi", help="print (or --out) the OpenAPI document")
    openapi.add_argument("--out", type=Path, default=None)
    openapi.set_defaults(run=_api_openapi)

    local = subcommands.add_parser("local", help="a persistent emulated AWS (moto server) on 127.0.0.1")
    local_actions = local.add_subparsers(dest="local_command", required=True)
    up = local_actions.add_parser("up", help="start it in the background and create logfan's resources")
    up.add_argument("--port", type=int, default=4566)
    up.add_argument("--prefix", default="logfan", help="the stack Prefix the resource names derive from")
    _state_dir(up)
    up.set_defaults(run=_local_up)
    down = local_actions.add_parser("down", help="stop it")
    _state_dir(down)
    down.set_defaults(run=_local_down)
