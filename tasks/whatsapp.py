"""The WhatsApp Cloud API sender: builds template messages and sends them over a pooled session."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from tasks import jsoncodec, texts
from tasks.errors import ErrorKind, classify
from tasks.keepalive import ConnectFailed, KeepAliveClient
from tasks.store.base import Sender


@dataclass(frozen=True)
class SendResult:
    """What one request to WhatsApp produced: a wamid, or an error code with Meta's detail."""

    wamid: str | None = None
    error_code: int | None = None
    error_detail: str | None = None
    http_status: int | None = None
    # True when the request may have reached WhatsApp but no answer came back: resending could deliver twice.
    ambiguous: bool = False
    # messages[0].message_status of an accepted send when it is not "accepted": WhatsApp holds the message
    # (held_for_quality_assessment, paused) and delivers or drops it later; its statuses arrive by webhook.
    message_status: str | None = None

    @property
    def ok(self) -> bool:
        """True when WhatsApp accepted the message."""
        return self.wamid is not None

    @property
    def kind(self) -> ErrorKind | None:
        """How the error must be handled, or None on success."""
        return None if self.ok else classify(self.error_code, self.http_status)


def template_payload(
    to: str, template: str, language: str, parameters: list | dict, callback_data: str | None = None
) -> dict:
    """The JSON body of a template message; a dict of parameters makes a named-parameter template."""
    if isinstance(parameters, dict):
        params = [{"type": "text", "text": str(v), "parameter_name": k} for k, v in parameters.items()]
    else:
        params = [{"type": "text", "text": str(v)} for v in parameters]
    body: dict[str, object] = {"name": template, "language": {"code": language}}
    if params:
        body["components"] = [{"type": "body", "parameters": params}]
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": body,
    }
    if callback_data:
        payload["biz_opaque_callback_data"] = callback_data
    return payload


class WhatsAppClient:
    """Sends messages to `{base_url}/{version}/{phone_number_id}/messages` over keep-alive connections.

    The send path is the one place where the HTTP client's own CPU decides the throughput: at 1,000
    messages/s on two cores, urllib3 and http.client (which requests sends through) cost 0.45 ms of CPU per
    request, geventhttpclient 0.19 ms, the lean client of `tasks/keepalive.py` less again
    (`bench/http_client.py`). Every other HTTP call of the project goes through requests. A POST is never
    retried by the client: a request that may have reached WhatsApp comes back as an ambiguous result, never
    as a second request.
    """

    def __init__(
        self, base_url: str, version: str, timeout_s: float, pool_size: int = 1024, tls: ssl.SSLContext | None = None
    ):
        self._http = KeepAliveClient(
            base_url, connect_timeout=min(5.0, timeout_s), network_timeout=timeout_s, max_connections=pool_size, tls=tls
        )
        self._prefix = f"{self._http.prefix}/{version}/"
        # (phone_number_id, access token) -> the request's head, built once.
        self._heads: dict[tuple[str, str], bytes] = {}

    def send(self, sender: Sender, payload: dict | bytes) -> SendResult:
        """POST one message (a payload, or its body already encoded: `PayloadBuilder.body`); network errors
        and unreadable answers become results, never exceptions."""
        key = (sender.phone_number_id, sender.access_token)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 1000:  # tokens rotate: old heads go
                self._heads.clear()
            try:
                head = self._http.head(
                    f"{self._prefix}{sender.phone_number_id}/messages",
                    {"Authorization": f"Bearer {sender.access_token.strip()}", "Content-Type": "application/json"},
                )
            except ValueError:  # nothing is sent; WhatsApp would refuse such a token (190)
                return SendResult(error_code=190, error_detail=texts.SEND_TOKEN_UNUSABLE)
            self._heads[key] = head
        # The message body as the Cloud API takes it: compact, UTF-8 as is.
        body = payload if type(payload) is bytes else jsoncodec.dumps(payload)
        try:
            status, data = self._http.post(head, body)
        except ConnectFailed:  # nothing was written: the message surely did not go out
            return SendResult(error_detail=texts.SEND_NO_CONNECTION)
        except TimeoutError:
            return SendResult(error_detail=texts.SEND_TIMED_OUT, ambiguous=True)
        except Exception as exc:
            return SendResult(error_detail=texts.SEND_CONNECTION_CUT.format(error=type(exc).__name__), ambiguous=True)
        return _parse(status, data)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()


def _parse(status: int, data: bytes) -> SendResult:
    """Turn the Cloud API's answer into a result."""
    try:
        body = jsoncodec.loads(data) if data else {}
    except ValueError:
        body = {}
    if status == 200:
        try:
            message = body["messages"][0]
            held = message.get("message_status")
            return SendResult(
                wamid=message["id"],
                http_status=200,
                message_status=held if isinstance(held, str) and held not in ("", "accepted") else None,
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            return SendResult(error_detail=texts.SEND_NO_MESSAGE_ID, http_status=200)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return SendResult(error_detail=f"HTTP {status}", http_status=status)
    details = (error.get("error_data") or {}).get("details") or error.get("message")
    return SendResult(error_code=error.get("code"), error_detail=details, http_status=status)
