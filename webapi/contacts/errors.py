"""The error that makes a whole contacts upload unusable (the API answers it with a 422)."""

from __future__ import annotations


class ContactsError(ValueError):
    """The whole upload is unusable; `message` tells the operator what to fix, `details` is for the API response."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        """Keep the operator message and machine-readable details together."""
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
