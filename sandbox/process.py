"""Start and stop the sandbox as a child process, for tests, benchmarks and the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import requests

from .server import LISTENING_PREFIX
from .settings import SandboxSettings

_LISTENING = re.compile(re.escape(LISTENING_PREFIX) + r"(http://\S+)")
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


class SandboxStartError(RuntimeError):
    """The sandbox process did not come up; the message carries what it printed."""


def _terminate(process: subprocess.Popen[bytes], log_path: str, timeout: float = 5.0) -> None:
    """Stop the process (SIGTERM, then SIGKILL) and delete its log file."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    try:
        os.unlink(log_path)
    except FileNotFoundError:
        pass


class SandboxHandle:
    """A running sandbox process and a small client for its /_sandbox/ admin routes."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: str) -> None:
        """Wrap an already started and healthy process."""
        self.process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.log_path = log_path
        self._session = requests.Session()
        # A test that forgets stop() must not leave a server behind when the interpreter exits.
        self._finalizer = weakref.finalize(self, _terminate, process, log_path)

    def message_url(self, phone_number_id: str, version: str = "v21.0") -> str:
        """Return the Cloud API send URL of one phone number on this sandbox."""
        return f"{self.url}/{version}/{phone_number_id}/messages"

    def _admin(
        self, method: str, path: str, payload: Any = None, params: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        """Call an admin route; a 400 (bad option) becomes ValueError, other failures raise from requests."""
        url = f"{self.url}/_sandbox/{path}"
        response = self._session.request(method, url, json=payload, params=params, timeout=timeout)
        if response.status_code == 400:
            raise ValueError(response.json().get("error", response.text))
        response.raise_for_status()
        return response.json()

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change options at runtime (each one replaces that option whole); returns the options in force."""
        return self._admin("POST", "config", options)

    def config(self) -> dict[str, Any]:
        """Return the options in force."""
        return self._admin("GET", "config")

    def messages(
        self, phone_number_id: str | None = None, since: int = 0, page_size: int = 5000
    ) -> list[dict[str, Any]]:
        """Return every accepted message from index since on, optionally of one phone number."""
        result: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"since": since, "limit": page_size}
            if phone_number_id is not None:
                params["phone_number_id"] = phone_number_id
            page = self._admin("GET", "messages", params=params)
            result.extend(page["messages"])
            if len(page["messages"]) < page_size:
                return result
            since = page["next_since"]

    def stats(self) -> dict[str, Any]:
        """Return the request counters, overall and per phone_number_id."""
        return self._admin("GET", "stats")

    def webhooks(self, wamid: str | None = None, since: int = 0, page_size: int = 5000) -> dict[str, Any]:
        """Return the webhook counters and the statuses posted per message (all pages, or one wamid's)."""
        params: dict[str, Any] = {"since": since, "limit": page_size}
        if wamid is not None:
            params["wamid"] = wamid
        result = page = self._admin("GET", "webhooks", params=params)
        while wamid is None and len(page["messages"]) >= page_size:
            params["since"] = page["next_since"]
            page = self._admin("GET", "webhooks", params=params)
            # The counters of the last page are the freshest; the messages add up over the pages.
            result = {**page, "messages": result["messages"] + page["messages"]}
        return result

    def flush_webhooks(self, timeout: float = 30.0) -> dict[str, Any]:
        """Post every planned status now and wait until all are settled; raises TimeoutError if that takes too long."""
        result = self._admin("POST", "webhooks/flush", params={"timeout": timeout}, timeout=timeout + 10)
        if result["status"] != "ok":
            raise TimeoutError(f"webhooks still pending after {timeout:g} s: {result}")
        return result

    def portfolios(self) -> dict[str, Any]:
        """Each portfolio's limit, unique recipients counted and messages refused beyond the limit."""
        return self._admin("GET", "portfolios")

    def change_portfolio_limit(self, portfolio_id: str, limit: int) -> dict[str, Any]:
        """Change a portfolio's limit as Meta does, which posts a business_capability_update notification."""
        return self._admin("POST", f"portfolios/{portfolio_id}/limit", {"limit": limit})

    def signal(self, kind: str, **options: Any) -> dict[str, Any]:
        """Post a template-status, quality, account-alert or account-update notification to webhook_url."""
        url = f"{self.url}/_sandbox/signals/{kind}"
        response = self._session.post(url, json=options, timeout=15)
        if response.status_code != 200:
            raise ValueError(f"signal {kind}: HTTP {response.status_code} {response.text}")
        return response.json()

    def opt_out(self, wa_id: str, phone_number_id: str, *, resume: bool = False, **options: Any) -> dict[str, Any]:
        """Make a recipient stop (or resume) marketing messages from a number; the notification is posted now."""
        path = f"users/{wa_id}/{'opt-in' if resume else 'opt-out'}"
        return self._admin("POST", path, {"phone_number_id": phone_number_id, **options})

    def inbound(self, sender: str, text: str, phone_number_id: str, **options: Any) -> dict[str, Any]:
        """Post a recipient's text reply to a number as an inbound message notification."""
        payload = {"from": sender, "text": text, "phone_number_id": phone_number_id, **options}
        return self._admin("POST", "inbound", payload)

    def reset(self, config: bool = False) -> None:
        """Clear the message log and counters; with config=True also restore the startup options."""
        self._admin("POST", "reset", {"config": config})

    def health(self) -> dict[str, Any]:
        """Return the health answer."""
        return self._admin("GET", "health")

    def output(self) -> str:
        """Return what the process has printed so far: its listening line, warnings and tracebacks."""
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process; safe to call twice."""
        self._session.close()
        if self._finalizer.detach() is not None:
            _terminate(self.process, self.log_path, timeout)

    def __enter__(self) -> SandboxHandle:
        """Use the running sandbox in a with block."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the sandbox when the with block ends."""
        self.stop()


def start_sandbox(
    port: int | None = None, *, host: str = "127.0.0.1", startup_timeout: float = 10.0, **options: Any
) -> SandboxHandle:
    """Run ``python -m sandbox`` with the given options (SandboxSettings fields) and wait until it is healthy.

    port None picks a free port. SANDBOX_* variables of this environment are not passed on, so only the
    options given here shape the sandbox.
    """
    # Fail in the caller, with a plain ValueError, rather than as a crashed child process.
    SandboxSettings().apply(options)
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "--host",
        host,
        "--port",
        str(port or 0),
        "--config",
        json.dumps(options),
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
    # Output goes to a file, not a pipe: a pipe nobody drains would block a chatty server.
    log_fd, log_path = tempfile.mkstemp(prefix="sandbox-", suffix=".log")
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT, env=env)
    finally:
        os.close(log_fd)

    deadline = time.monotonic() + startup_timeout
    url = None
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        # Read after polling, so an exited process's last words are in the output.
        output = Path(log_path).read_text(errors="replace")
        if exited:
            _terminate(process, log_path)
            raise SandboxStartError(f"sandbox exited with status {process.returncode}:\n{output}")
        match = _LISTENING.search(output)
        if match:
            url = match.group(1)
            try:
                if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                    return SandboxHandle(process, url, log_path)
            except requests.RequestException:
                pass
        time.sleep(0.02)
    output = Path(log_path).read_text(errors="replace")
    _terminate(process, log_path)
    waited_for = url or "its health check"
    raise SandboxStartError(f"sandbox did not answer {waited_for} within {startup_timeout:g} s:\n{output}")
