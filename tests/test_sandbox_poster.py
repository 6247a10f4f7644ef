"""The sandbox's notification client keeps connections alive the way Meta's senders do, and no longer."""

from __future__ import annotations

import asyncio

from sandbox.poster import KeepAlivePoster


async def _serve_raw(respond):
    """A raw HTTP server that counts connections and requests; after reading each request's head and body it
    hands the writer to `respond`, which answers (or not) and says whether to keep the connection."""
    seen = {"connections": 0, "requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        v
                        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                        if k.lower() == b"content-length"
                    )
                )
                await reader.readexactly(length)
                seen["requests"] += 1
                if not await respond(writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", seen


async def _serve(answer: bytes, close_after_answer: bool):
    """A server that answers each request with `answer`, closing the connection after it if asked."""

    async def respond(writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        await writer.drain()
        return not close_after_answer

    return await _serve_raw(respond)


def test_posts_share_one_connection_while_the_server_keeps_it():
    async def run():
        server, url, seen = await _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", False)
        poster = KeepAlivePoster(url, "facebookexternalua")
        codes = [await poster.post(b'{"n": %d}' % i, {"X-Hub-Signature-256": "sha256=0"}, 5) for i in range(20)]
        await poster.close()
        server.close()
        return codes, seen

    codes, seen = asyncio.run(run())
    assert codes == [200] * 20
    assert seen == {"connections": 1, "requests": 20}


def test_a_server_that_closes_gets_a_new_connection_and_no_failed_post():
    async def run():
        server, url, seen = await _serve(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}", True)
        poster = KeepAlivePoster(url, "facebookexternalua")
        codes = []
        for _ in range(5):
            codes.append(await poster.post(b"{}", {}, 5))
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        await poster.close()
        server.close()
        return codes, seen

    codes, seen = asyncio.run(run())
    assert codes == [401] * 5
    assert seen == {"connections": 5, "requests": 5}


def test_an_answer_that_never_comes_times_out_and_its_connection_is_not_reused():
    async def run():
        answered = []

        async def respond(writer):
            if not answered:  # the first request waits forever
                answered.append(False)
                await asyncio.sleep(3600)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return True

        server, url, seen = await _serve_raw(respond)
        poster = KeepAlivePoster(url, "facebookexternalua")
        started = asyncio.get_running_loop().time()
        try:
            await poster.post(b"{}", {}, 0.3)
            outcome = "answered"
        except TimeoutError:
            outcome = "timed out"
        waited = asyncio.get_running_loop().time() - started
        second = await poster.post(b"{}", {}, 5)
        await poster.close()
        server.close()
        return outcome, waited, second, seen

    outcome, waited, second, seen = asyncio.run(run())
    assert outcome == "timed out" and 0.3 <= waited < 2
    assert second == 200 and seen["connections"] == 2, "the late answer's connection was dropped, not reused"


def test_a_server_that_hangs_up_or_answers_garbage_fails_the_post_with_a_reason():
    async def run(reply: bytes | None):
        async def respond(writer):
            if reply is not None:
                writer.write(reply)
            return False  # then close

        server, url, _ = await _serve_raw(respond)
        poster = KeepAlivePoster(url, "facebookexternalua")
        try:
            return await poster.post(b"{}", {}, 5)
        except Exception as exc:  # what the caller records as the last error
            return type(exc).__name__
        finally:
            await poster.close()
            server.close()

    assert asyncio.run(run(None)) == "ConnectionResetError"
    assert asyncio.run(run(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")) == "ConnectionResetError"
    assert asyncio.run(run(b"not http at all\r\n\r\n")) == "HttpParserError"


def test_a_post_in_flight_when_its_poster_is_closed_still_times_out():
    """The sandbox closes its poster when the webhook URL changes; a POST still waiting must not wait forever."""

    async def run():
        async def respond(writer):
            await asyncio.sleep(3600)
            return False

        server, url, _ = await _serve_raw(respond)
        poster = KeepAlivePoster(url, "facebookexternalua")
        post = asyncio.create_task(poster.post(b"{}", {}, 0.3))
        await asyncio.sleep(0.1)
        await poster.close()
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(post, 5)
            outcome = "answered"
        except TimeoutError:
            outcome = "timed out"
        waited = asyncio.get_running_loop().time() - started
        server.close()
        return outcome, waited

    outcome, waited = asyncio.run(run())
    assert outcome == "timed out" and waited < 1, "the POST kept its own deadline, not the test's 5 s"


def test_a_notification_orjson_cannot_write_is_written_as_before():
    from sandbox.webhooks import _encode_body, _encode_json

    lone_surrogate = {"statuses": [{"id": "wamid.1", "biz_opaque_callback_data": "\ud83d"}]}
    for body in (lone_surrogate, {"t": "Señora\x7f"}, {"a": 1}):
        assert _encode_body(body) == _encode_json(body).encode()
