"""The send path's HTTP/1.1 client: one kind of request (a POST with a JSON body) over keep-alive connections.

It does what a general client does for every request only once: the request's fixed head is built per path
and token from bytes, the request leaves in one `send` (more only when the kernel takes it in parts), and the
answer is read with as few `recv` calls as it arrived in, its head scanned for the three headers that decide
how to read the body (Content-Length, Transfer-Encoding, Connection). Under gevent (the workers are
monkey-patched) every socket call waits on the hub, so hundreds of requests share one process.

What it promises the sender: `ConnectFailed` means no byte of the request was written (the message surely
did not go out); any other exception may come after WhatsApp received it. It never retries.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from gevent import get_hub, getcurrent, spawn_raw
from gevent import sleep as _green_sleep
from gevent.lock import BoundedSemaphore as _GreenSemaphore
from gevent.monkey import get_original, is_module_patched

# The real select: asks the kernel whether an idle connection has news, without waiting or the hub.
_select = get_original("select", "select")

_MAX_HEAD = 64 * 1024  # an answer's status line and headers
_MAX_BODY = 16 * 1024 * 1024
_RECV = 64 * 1024


class ConnectFailed(OSError):
    """No connection could be made (resolving, connecting, the TLS handshake): nothing was sent."""


class BadResponse(OSError):
    """The server's answer was not HTTP/1.1 this client can read, or the connection closed in its middle."""


class KeepAliveClient:
    """POSTs to one origin (`http://` or `https://host[:port]`), reusing idle connections.

    At most `max_connections` requests are in flight at once; a request that finds them all busy waits up to
    the connect timeout for one, then fails as `ConnectFailed` (nothing sent). An idle connection is checked
    before reuse: one the server has closed (or that has unexpected bytes waiting) is dropped and another
    taken, so a closed keep-alive connection never costs a message.
    """

    def __init__(
        self,
        base_url: str,
        connect_timeout: float,
        network_timeout: float,
        max_connections: int = 1024,
        tls: ssl.SSLContext | None = None,
    ):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.prefix = url.path.rstrip("/")
        self._address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
        default_port = url.port is None or url.port == (443 if url.scheme == "https" else 80)
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname  # an IPv6 address
        host = host if default_port else f"{host}:{url.port}"
        self._host_line = f"Host: {host}\r\n".encode("ascii")
        # https: the system's trusted authorities and hostname check, unless a context is given.
        self._tls = (tls or ssl.create_default_context()) if url.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._idle: list[socket.socket] = []
        # At most this many requests at once (each holds a connection); more wait up to the connect timeout.
        # In a patched worker, gevent's own semaphore: threading's, built on patched locks and a condition in
        # Python, was a few percent of the worker's CPU. Unpatched (threads), threading's.
        patched = is_module_patched("threading")
        self._slots = (_GreenSemaphore if patched else threading.BoundedSemaphore)(max_connections)
        # Patched: one watcher greenlet keeps the requests' network timeouts; the sockets wait without one.
        self._deadlines = _Deadlines(network_timeout) if is_module_patched("socket") else None
        self._socket_timeout = None if self._deadlines is not None else network_timeout

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        """The fixed part of a POST to `path` with these headers, to pass to `post` (build it once per path).

        Values are stripped of surrounding blanks; a line break or a character outside Latin-1 left in a
        value (or in the path) raises ValueError, before anything is sent.
        """
        lines = [f"POST {path} HTTP/1.1\r\n".encode("ascii"), self._host_line]
        if any(ch in path for ch in " \r\n"):
            raise ValueError("the path has a blank or a line break")
        for name, value in headers.items():
            value = value.strip()
            if any(ch in value for ch in "\r\n\0") or any(ch in name for ch in "\r\n: "):
                raise ValueError(f"header {name!r} has a line break")
            try:
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
            except UnicodeEncodeError:
                raise ValueError(f"header {name!r} is not Latin-1") from None
        lines.append(b"Content-Length: ")
        return b"".join(lines)

    def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send `head` (from `head()`) with `body`; returns (HTTP status, body of the answer)."""
        if not self._slots.acquire(timeout=self._connect_timeout):
            raise ConnectFailed("every connection is busy")
        try:
            sock = self._take()
            deadlines = self._deadlines
            timed = deadlines.start() if deadlines is not None else None
            try:
                _send_all(sock, b"%s%d\r\n\r\n%s" % (head, len(body), body))
                status, data, reusable = _read_answer(sock)
            except BaseException:
                sock.close()
                raise
            finally:
                if deadlines is not None:
                    deadlines.end(timed)
            if reusable:
                self._idle.append(sock)
            else:
                sock.close()
            return status, data
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections (requests in flight close theirs when they end)."""
        idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def _take(self) -> socket.socket:
        """An idle connection still open, else a new one."""
        while self._idle:
            sock = self._idle.pop()
            if self._still_open(sock):
                return sock
            sock.close()
        return self._connect()

    def _still_open(self, sock: socket.socket) -> bool:
        """Whether an idle connection can carry a request: nothing to read on it, or only TLS's own records."""
        try:
            readable, _, _ = _select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        if self._tls is None:
            return False  # the server closed it (or sent what no request asked for)
        # A TLS 1.3 server sends its session tickets after the handshake: reading them gives no data.
        try:
            sock.settimeout(0)
            sock.recv(1)  # data no request asked for, or the end of the connection
            return False
        except ssl.SSLWantReadError:
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(self._socket_timeout)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except OSError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
        except OSError as exc:
            sock.close()
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        sock.settimeout(self._socket_timeout)
        return sock


class _Deadlines:
    """The network timeout of a patched worker's requests, kept by one greenlet rather than by every wait.

    gevent gives each socket wait with a timeout its own `Timeout`: a Python object and a libev timer, started
    and stopped, and an exception made ready, about 7 µs of a request's CPU in a sending worker. Here a
    request in flight has a deadline in a dict and one greenlet looks at them every `tick` (a tenth of the
    timeout, at most a second): a request still waiting past its deadline gets `TimeoutError` thrown in
    where it waits, as the socket's own timeout would raise it, at most a tick late. The deadline covers the
    whole request, its write and its answer, from the moment it has a connection. A request that ends
    first takes its deadline (or a throw not yet made) with it, so nothing is thrown into what its greenlet
    does next. One hub, as a worker has: the greenlets it watches are its own thread's.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.tick = min(1.0, max(0.01, timeout / 10))
        self._due: dict = {}  # greenlet -> its deadline (time.monotonic), or the callback that throws in
        self._watching = False

    def start(self):
        """The current greenlet's request starts now; pass what this returns to `end`."""
        current = getcurrent()
        self._due[current] = time.monotonic() + self.timeout
        if not self._watching:
            self._watching = True
            spawn_raw(self._watch)
        return current

    def end(self, current) -> None:
        """The request ended (answered or not): its deadline no longer applies."""
        due = self._due.pop(current, None)
        if due is not None and type(due) is not float:
            due.stop()  # due, but not thrown in yet

    def _watch(self) -> None:
        try:
            while self._due:
                _green_sleep(self.tick)
                now = time.monotonic()
                loop = get_hub().loop
                for waiting, due in list(self._due.items()):
                    if type(due) is float and due <= now:
                        self._due[waiting] = loop.run_callback(waiting.throw, TimeoutError("timed out"))
        finally:
            self._watching = False


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of `data`. gevent's `sendall` asks the kernel for the socket's buffer size on every call (a
    system call per message) to cut large writes into pieces; a request is a kilobyte or two."""
    sent = sock.send(data)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(view):
            sent += sock.send(view[sent:])


def _read_answer(sock: socket.socket) -> tuple[int, bytes, bool]:
    """Read one answer: (status, body, whether the connection may carry another request)."""
    data = b""
    while True:  # an interim 1xx answer is skipped
        end = data.find(b"\r\n\r\n")
        while end < 0:
            if len(data) > _MAX_HEAD:
                raise BadResponse("the answer's head is too long")
            more = sock.recv(_RECV)
            if not more:
                raise BadResponse("the connection closed before an answer" if not data else "cut in the head")
            data += more
            end = data.find(b"\r\n\r\n")
        lines = data[:end].decode("latin-1").split("\r\n")
        data = data[end + 4 :]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        if not 100 <= status < 200 or status == 101:
            break
    keep = parts[0] == "HTTP/1.1"
    length = -1
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            value = value.strip()
            if not value.isdigit():
                raise BadResponse(f"bad Content-Length: {value[:40]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.strip().lower().endswith("chunked")
        elif name == "connection":
            tokens = {t.strip().lower() for t in value.split(",")}
            keep = "close" not in tokens and (keep or "keep-alive" in tokens)
    if status in (204, 304):
        return status, b"", keep and not data
    if chunked:
        body, data = _read_chunked(sock, data)
        return status, body, keep and not data
    if length >= 0:
        if length > _MAX_BODY:
            raise BadResponse("the answer's body is too long")
        while len(data) < length:
            more = sock.recv(max(_RECV, length - len(data)))
            if not more:
                raise BadResponse("cut in the body")
            data += more
        return status, data[:length], keep and len(data) == length
    while len(data) <= _MAX_BODY:  # no length: the body ends when the server closes
        more = sock.recv(_RECV)
        if not more:
            return status, data, False
        data += more
    raise BadResponse("the answer's body is too long")


def _read_chunked(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    """Decode a chunked body that starts in `data`; returns (body, bytes after it)."""
    body: list[bytes] = []
    size_total = 0

    def line() -> bytes:
        nonlocal data
        end = data.find(b"\r\n")
        while end < 0:
            if len(data) > _MAX_HEAD:
                raise BadResponse("a chunk's size line is too long")
            more = sock.recv(_RECV)
            if not more:
                raise BadResponse("cut in a chunk's size line")
            data += more
            end = data.find(b"\r\n")
        found, data = data[:end], data[end + 2 :]
        return found

    while True:
        size_text = line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadResponse(f"bad chunk size: {size_text[:20]!r}") from None
        if size == 0:
            while line():  # trailers, up to the blank line
                pass
            return b"".join(body), data
        size_total += size
        if size_total > _MAX_BODY:
            raise BadResponse("the answer's body is too long")
        while len(data) < size + 2:
            more = sock.recv(max(_RECV, size + 2 - len(data)))
            if not more:
                raise BadResponse("cut in a chunk")
            data += more
        if data[size : size + 2] != b"\r\n":
            raise BadResponse("a chunk does not end where its size says")
        body.append(data[:size])
        data = data[size + 2 :]
