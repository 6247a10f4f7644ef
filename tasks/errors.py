"""Sorting WhatsApp Cloud API errors by what the sender must do about them."""

from __future__ import annotations

from enum import Enum

from tasks.texts import (
    ERROR_CODE_REASONS,
    ERROR_NETWORK,
    ERROR_NETWORK_DETAIL,
    ERROR_OTHER,
    ERROR_OTHER_DETAIL,
    ERROR_PERMISSION,
)


class ErrorKind(Enum):
    """What a send error means for the message and its campaign."""

    TRANSIENT = "transient"  # retry the same message with backoff
    RECIPIENT = "recipient"  # this recipient fails now; the campaign goes on
    CAMPAIGN = "campaign"  # every message would fail the same way: stop the campaign
    ACCOUNT = "account"  # credentials, quality or account trouble: pause until someone acts


# Codes that mean "try again later"; network errors, timeouts and 5xx are transient too.
_TRANSIENT = {130429, 131056, 4, 80007, 131057, 131000, 131016, 1, 2}
_CAMPAIGN = {132000, 132001, 132005, 132007, 132012}
_ACCOUNT = {131048, 132015, 132016, 190, 10, 368, 131031, 131042}


def classify(code: int | None, http_status: int | None = None) -> ErrorKind:
    """Decide on the error code (Meta's advice), falling back to the HTTP status only when there is none."""
    if code is None:
        if http_status is None or http_status >= 500 or http_status == 429:
            return ErrorKind.TRANSIENT
        return ErrorKind.RECIPIENT
    if code in _TRANSIENT:
        return ErrorKind.TRANSIENT
    if code in _CAMPAIGN:
        return ErrorKind.CAMPAIGN
    if code in _ACCOUNT or 200 <= code <= 299:
        return ErrorKind.ACCOUNT
    if http_status is not None and http_status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.RECIPIENT


def describe(code: int | None, detail: str | None = None) -> str:
    """A sentence for the operator: our explanation of the code, or Meta's detail when we have none."""
    if code in ERROR_CODE_REASONS:
        return ERROR_CODE_REASONS[code]
    if 200 <= (code or 0) <= 299:
        return ERROR_PERMISSION.format(code=code)
    if code is None:
        return ERROR_NETWORK_DETAIL.format(detail=detail) if detail else ERROR_NETWORK
    return ERROR_OTHER_DETAIL.format(code=code, detail=detail) if detail else ERROR_OTHER.format(code=code)
