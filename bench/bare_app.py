"""The floor of a notification intake: a WSGI app that reads the body and answers 200, nothing else; and the
receiver's server doing the same (`python -m bench.bare_app PORT`)."""

from __future__ import annotations

_BODY = b'{"success":true}\n'


def app(environ, start_response):
    """Read the request body and acknowledge it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))])
    return [_BODY]


def bare_receiver(port: int) -> None:
    """The receiver's own floor: webapi/receiver.py's server answering 200 to every body, unchecked and unkept."""
    from tasks.config import load_settings
    from webapi.intake import ACCEPTED
    from webapi.receiver import Receiver, run

    class BareReceiver(Receiver):
        def _keep(self, request):
            b"".join(request.body)
            return ACCEPTED

    # It keeps nothing: no inbox, no queue.
    run(BareReceiver(load_settings(), None, None), "127.0.0.1", port)


if __name__ == "__main__":
    import sys

    bare_receiver(int(sys.argv[1]))
