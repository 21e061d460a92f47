"""`logfan local up|down`: a moto server on 127.0.0.1 that outlives the command, with logfan's resources.

The server runs as a detached process (its own session); its pid and port are kept in a pidfile under
the state directory (`--state-dir`, LOGFAN_STATE_DIR, else ~/.logfan), so `down` stops exactly that
process and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from pipeline.config import ResourceNames
from pipeline.errors import ConfigurationError
from pipeline.local.aws import LOCAL_REGION, create_resources

__all__ = ["LocalEnvironment", "resolve_state_dir", "start", "stop"]

PIDFILE = "moto.json"
LOGFILE = "moto.log"
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class LocalEnvironment:
    pid: int
    port: int
    state_dir: Path

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def exports(self) -> dict[str, str]:
        """What a shell needs so every boto3 client (and `logfan`) talks to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }


def resolve_state_dir(given: Path | None) -> Path:
    return given or Path(os.environ.get("LOGFAN_STATE_DIR") or Path.home() / ".logfan")


def _is_moto(pid: int) -> bool:
    """The pid is alive and (where /proc tells) still our moto server, not a recycled pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"moto.server" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _running(state_dir: Path) -> LocalEnvironment | None:
    try:
        document = json.loads((state_dir / PIDFILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    environment = LocalEnvironment(pid=int(document["pid"]), port=int(document["port"]), state_dir=state_dir)
    return environment if _is_moto(environment.pid) else None


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def _create(environment: LocalEnvironment, names: ResourceNames) -> None:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=LOCAL_REGION
    )
    create_resources(session, names, endpoint_url=environment.endpoint_url)


def start(state_dir: Path | None, *, port: int, names: ResourceNames, timeout_s: float = 30.0) -> LocalEnvironment:
    """Start the server (or find the one already running) and create every table, stream and queue."""
    directory = resolve_state_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    running = _running(directory)
    if running is not None:
        _create(running, names)
        return running
    if _listening(port):
        raise ConfigurationError(f"port {port} on {HOST} is in use by something else: pass --port")
    with (directory / LOGFILE).open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    environment = LocalEnvironment(pid=process.pid, port=port, state_dir=directory)
    (directory / PIDFILE).write_text(json.dumps({"pid": process.pid, "port": port}), encoding="utf-8")
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(directory)
            raise ConfigurationError(f"the moto server did not start; see {directory / LOGFILE}")
        time.sleep(0.1)
    _create(environment, names)
    return environment


def _reap(pid: int) -> bool:
    """True once `pid` is gone (reaping it when it is our own child)."""
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return True
    return not _is_moto(pid)


def stop(state_dir: Path | None, *, timeout_s: float = 10.0) -> int | None:
    """Stop the server the pidfile names; its pid, or None when none was running."""
    directory = resolve_state_dir(state_dir)
    running = _running(directory)
    (directory / PIDFILE).unlink(missing_ok=True)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while not _reap(running.pid):
        if time.monotonic() > deadline:
            os.kill(running.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return running.pid
