"""Protocol errors: an HTTP status and a message in the protocol's ``{"error": ...}`` form."""

from __future__ import annotations

import nuclio_sdk

from runtime.responses import JSON, dump_json


class InferenceError(nuclio_sdk.ExceptionWithResponse):
    """Raised while decoding or encoding; the worker turns it into the error response
    without logging a traceback (it is the client's or the handler's data, not a crash)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, dump_json({"error": message}), JSON)
        self.message = message

    def __str__(self) -> str:
        return self.message


def bad_request(message: str) -> InferenceError:
    return InferenceError(400, message)
