"""`python -m demo` (or `make demo`): one campaign end to end on this machine, from upload to summary."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import requests

from demo.services import EmbeddedPostgres, EmbeddedRedis, free_port, port_is_open
from sandbox.process import start_sandbox
from tasks.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = Path(__file__).resolve().parent / "contactos_demo.csv"
DEMO_BUZON = "demo"
DEMO_PHONE_NUMBER_ID = "109876543210001"
DEMO_TOKEN = "demo-sandbox-token"
FLOWER_USER = "demo"


def flower_credentials(data_dir: Path) -> tuple[str, str, str]:
    """Flower's basic-auth setting, its user and where the password is: FLOWER_BASIC_AUTH if set, else a new one.

    Flower shows task arguments and results and can revoke tasks, so the demo never starts it open. A
    generated password goes to a file only the current user can read, never to the terminal or a command line.
    """
    configured = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if configured:
        return configured, configured.split(":", 1)[0], "FLOWER_BASIC_AUTH"
    path = data_dir / "flower-password.txt"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    password = path.read_text().strip() or secrets.token_urlsafe(18)
    path.write_text(password + "\n")
    return f"{FLOWER_USER}:{password}", FLOWER_USER, str(path)


class Process:
    """A service process of the demo, logging to its own file, in its own session so Ctrl-C reaches only us."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check(self) -> None:
        """Fail loudly, with the end of its log, if the process died."""
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{self.name} stopped unexpectedly (exit {self.popen.returncode}):\n{tail}")

    def stop(self) -> None:
        """Ask the process to finish (SIGTERM), then kill it if it does not within 20 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def preferred_port(port: int) -> int:
    """The usual port when it is free, otherwise any free one."""
    return port if not port_is_open(port) else free_port()


def wait_until(check, timeout: float, what: str, processes: list[Process]) -> None:
    """Poll `check` until it holds, watching that no service died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            p.check()
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"Timed out after {timeout:.0f}s waiting for {what}.")


def progress_bar(status: dict, width: int = 40) -> str:
    """One line: a bar, the percentage and the counters."""
    done = int(width * status["progress"] / 100)
    return (
        f"\r[{'#' * done}{'.' * (width - done)}] {status['progress']:5.1f}%  enviados {status['sent']}  "
        f"fallidos {status['failed']}  pendientes {status['pending']}  {status['messages_per_second']:.0f} msg/s "
    )


def run(args: argparse.Namespace) -> int:
    """Start everything, run the sample campaign, print the summary, and stop everything on the way out."""
    data_dir = Path(args.data_dir).resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    with ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            print("REDIS_URL is not set: starting an embedded Redis ...")
            redis_url = stack.enter_context(EmbeddedRedis(data_dir / "redis")).url
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            print("DATABASE_URL is not set: starting an embedded PostgreSQL ...")
            database_url = stack.enter_context(EmbeddedPostgres(data_dir / "postgres")).url
        print(f"Applying migrations: {', '.join(apply_migrations(database_url)) or 'already up to date'}")

        sandbox = stack.enter_context(
            start_sandbox(
                latency_min_ms=50, latency_max_ms=300, default_mps=80, tokens={DEMO_PHONE_NUMBER_ID: DEMO_TOKEN}
            )
        )
        # Registered after the embedded services, so it runs before they stop: the worker, beat, Flower and
        # the API leave while Redis and PostgreSQL still answer (the other way round, each waited to be killed).
        stack.callback(lambda: [p.stop() for p in reversed(processes)])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPABASE_")}
        env.update(
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            API_WHATSAPP_URL=sandbox.url,
            INSTANCE_ID=os.environ.get("INSTANCE_ID", "demo"),
            PYTHONUNBUFFERED="1",
            WHATSAPP_ACCESS_TOKEN=DEMO_TOKEN,
        )
        python = sys.executable
        subprocess.run(
            [
                python,
                "-m",
                "flask",
                "--app",
                "webapi",
                "buzon",
                "add",
                DEMO_BUZON,
                "--phone-number-id",
                DEMO_PHONE_NUMBER_ID,
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        env.pop("WHATSAPP_ACCESS_TOKEN")
        # The demo calls the API like any client: with an operator key, made by the same command an admin runs.
        made = subprocess.run(
            [
                python,
                "-m",
                "flask",
                "--app",
                "webapi",
                "apikey",
                "create",
                f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                "--role",
                "operator",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        api_key = made.stdout.strip().splitlines()[-1]
        auth = {"X-API-Key": api_key}

        api_port, flower_port = preferred_port(5000), preferred_port(5555)
        api_url, flower_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{flower_port}"
        processes.append(
            Process(
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "tasks",
                    "worker",
                    "-P",
                    "gevent",
                    "-c",
                    "200",
                    "-E",
                    "-n",
                    "demo@%h",
                    "--loglevel=INFO",
                ],
                env,
                log_dir,
            )
        )
        processes.append(
            Process(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "tasks",
                    "beat",
                    "--loglevel=INFO",
                    "-s",
                    str(data_dir / "celerybeat-schedule"),
                ],
                env,
                log_dir,
            )
        )
        flower_auth, flower_user, flower_password_at = flower_credentials(data_dir)
        # Through the environment, which Flower reads itself: a command line is visible to every local user.
        processes.append(
            Process(
                "flower",
                [python, "-m", "celery", "-A", "tasks", "flower", f"--port={flower_port}", "--address=127.0.0.1"],
                {**env, "FLOWER_BASIC_AUTH": flower_auth},
                log_dir,
            )
        )
        processes.append(
            Process(
                "api",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "-k",
                    "gevent",
                    "-w",
                    "1",
                    "-b",
                    f"127.0.0.1:{api_port}",
                    "webapi:create_app()",
                ],
                env,
                log_dir,
            )
        )
        print("Starting the worker, beat (the sweeper), Flower and the API ...")
        wait_until(
            lambda: requests.get(api_url + "/api/estado-sistema", headers=auth, timeout=2).json()["worker_running"],
            60,
            "the API and a live worker",
            processes,
        )
        login = tuple(flower_auth.split(",")[0].split(":", 1))
        wait_until(lambda: requests.get(flower_url + "/api/workers", auth=login, timeout=2).ok, 60, "Flower", processes)

        title = f"Demo bienvenida {time.strftime('%Y-%m-%d %H:%M:%S')}"
        with open(args.contacts, "rb") as csv:
            response = requests.post(
                api_url + "/api/crear-campana",
                timeout=60,
                headers=auth,
                data={"titulo_campana": title, "plantilla": "bienvenida_cliente", "buzon": DEMO_BUZON, "idioma": "es"},
                files={"archivo_csv": (Path(args.contacts).name, csv, "text/csv")},
            )
        body = response.json()
        if not body.get("success"):
            raise SystemExit(f"Upload refused ({response.status_code}): {body.get('message')}")
        campaign_id = body["campaign_id"]
        print(f"\n{body['message']}")
        for row in body["rechazados"]:
            print(f"  fila {row['fila']}: {row['motivo']} ({row['valor']})")
        print(
            f"\nCampaign '{campaign_id}': {body['total_messages']} messages through the WhatsApp sandbox "
            f"(80 msg/s cap, 50-300 ms latency)"
        )
        started = time.monotonic()
        while True:
            status = requests.get(f"{api_url}/api/estado-cola/{campaign_id}", headers=auth, timeout=10).json()
            print(progress_bar(status), end="", flush=True)
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            for p in processes:
                p.check()
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        accepted = sandbox.stats()["accepted"]
        print(
            f"\n\nSummary: status {status['status']}, {status['sent']} sent, {status['failed']} failed, "
            f"{body['total_rechazados']} rows rejected at upload, {elapsed:.1f} s "
            f"({status['sent'] / elapsed:.0f} msg/s); the sandbox accepted {accepted} messages."
        )
        print(f"\n  API docs:        {api_url}/api/docs")
        print(f"  Queue status:    {api_url}/api/estado-cola/{campaign_id}")
        print(f"  Campaigns:       {api_url}/api/listar-campanas")
        print(f"  Flower:          {flower_url}  (user '{flower_user}', password in {flower_password_at})")
        print(f"  Console:         {api_url}/  (sign in with the API key below)")
        print(f"  API key (operator): {api_key}")
        print(f"    e.g. curl -H 'X-API-Key: {api_key}' {api_url}/api/listar-campanas")
        print(f"  Sandbox log:     {sandbox.url}/_sandbox/messages")
        print(f"  Service logs:    {log_dir}")
        if args.keep_running:
            print("\nEverything keeps running; press Ctrl-C to stop it all.")
            try:
                while True:
                    for p in processes:
                        p.check()
                    time.sleep(1)
            except KeyboardInterrupt:
                print()
        print("Stopping the API, Flower, beat, the worker, the sandbox and the embedded services ...")
        return 0 if status["status"] == "completed" else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the demo; Ctrl-C at any point stops everything cleanly."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--contacts", default=str(SAMPLE_CSV), help="CSV of contacts to send (default: bundled sample)")
    parser.add_argument("--data-dir", default=str(ROOT / ".demo"), help="where embedded services keep data and logs")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-running",
        dest="keep_running",
        action="store_true",
        help="after the summary, keep the services up until Ctrl-C (default on a terminal)",
    )
    keep.add_argument("--exit", dest="keep_running", action="store_false", help="stop right after the summary")
    parser.set_defaults(keep_running=sys.stdin.isatty())
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nInterrupted: everything was stopped.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
