"""A handler's response -> the serialized ext_proc ``ProcessingResponse`` for a phase.

Conventions (documented in the README):
- ``X-Nuclio-Immediate-Response: true`` in the handler's headers sends its
  status, headers and body straight to the client (an ``ImmediateResponse``),
  so that an immediate 200 is possible; in request phases any status other
  than 200 does the same, in response phases any status >= 500.
- ``X-Processing-Status: <code>`` (the seed system's wrapprocessor convention) does
  the same with that status.
- ``X-Nuclio-Remove-Headers: a, b`` removes those headers from the message.
- Every other response header is set (overwriting); a non-empty body at a
  body phase replaces the body, with ``content-length`` and ``content-type``
  set to match (and ``content-encoding`` removed when we decompressed it).
- In response phases a status other than 200 replaces the upstream status.

Replies that never change (plain CONTINUE per phase) are serialized once.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2

from runtime.responses import RawResponse
from triggers.extproc.events import REQUEST_BODY, REQUEST_HEADERS, RESPONSE_BODY

IMMEDIATE_HEADER = "x-nuclio-immediate-response"
REMOVE_HEADER = "x-nuclio-remove-headers"
SEED_STATUS_HEADER = "x-processing-status"
_FALSE = ("", "0", "false", "no")
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# ProcessingResponse field per phase.
_FIELD = {REQUEST_HEADERS: "request_headers", REQUEST_BODY: "request_body",
          "4": "response_headers", RESPONSE_BODY: "response_body"}
_WRAPPER = {REQUEST_HEADERS: pb.HeadersResponse, REQUEST_BODY: pb.BodyResponse,
            "4": pb.HeadersResponse, RESPONSE_BODY: pb.BodyResponse}


def _serialize(phase: str, common: pb.CommonResponse | None = None) -> bytes:
    wrapper = _WRAPPER[phase](response=common) if common is not None else _WRAPPER[phase]()
    return pb.ProcessingResponse(**{_FIELD[phase]: wrapper}).SerializeToString()


# Plain CONTINUE, one per phase.
CONTINUE = {phase: _serialize(phase) for phase in _FIELD}
CONTINUE_REQUEST_TRAILERS = pb.ProcessingResponse(
    request_trailers=pb.TrailersResponse()).SerializeToString()
CONTINUE_RESPONSE_TRAILERS = pb.ProcessingResponse(
    response_trailers=pb.TrailersResponse()).SerializeToString()
# STREAMED bodies we accumulate: headers go on without content-length (the body may change
# length), each chunk but the last is held back (cleared) until the handler has run.
CONTINUE_WITHOUT_LENGTH = {
    phase: _serialize(phase, pb.CommonResponse(
        header_mutation=pb.HeaderMutation(remove_headers=["content-length"])))
    for phase in (REQUEST_HEADERS, "4")}
CLEAR_CHUNK = {
    phase: _serialize(phase, pb.CommonResponse(body_mutation=pb.BodyMutation(clear_body=True)))
    for phase in (REQUEST_BODY, RESPONSE_BODY)}


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()), append_action=_OVERWRITE)


def _split(headers: dict[str, str]) -> tuple[dict[str, str], bool, list[str]]:
    """Lower-cased headers without our markers, the immediate flag, headers to remove."""
    out = {k.lower(): v for k, v in headers.items()} if headers else {}
    immediate = out.pop(IMMEDIATE_HEADER, "").strip().lower() not in _FALSE
    remove = [h.strip().lower() for h in out.pop(REMOVE_HEADER, "").split(",") if h.strip()]
    return out, immediate, remove


def immediate_response(status: int, headers: dict[str, str], body: bytes,
                       content_type: str) -> bytes:
    headers = dict(headers)
    headers.pop(IMMEDIATE_HEADER, None)
    headers.pop(REMOVE_HEADER, None)
    if body and "content-type" not in headers:
        headers["content-type"] = content_type
    mutation = pb.HeaderMutation(set_headers=[_header(k, v) for k, v in headers.items()])
    return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=status),
        headers=mutation, body=body)).SerializeToString()


def error_reply(status: int, body: bytes, content_type: str) -> bytes:
    return immediate_response(status, {}, body, content_type)


def reply(phase: str, result: RawResponse, *, original: bytes | None = None,
          decompressed: bool = False, length_known: bool = True) -> bytes:
    """The reply for a blocking phase once its handler has answered.

    ``original`` is the body to send on when the handler returns none but we held the
    body back (accumulated STREAMED chunks); ``length_known`` is False when the headers
    already went upstream (STREAMED), so ``content-length`` cannot be fixed here.
    """
    headers, immediate, remove = _split(result.headers)
    response_phase = phase > REQUEST_BODY
    status = result.status
    seed_status = headers.pop(SEED_STATUS_HEADER, "").strip()
    if seed_status.isdigit():
        immediate, status = True, int(seed_status)
    if immediate or (status >= 500 if response_phase else status != 200):
        return immediate_response(status, headers, result.body, result.content_type)
    body: bytes | None = None
    if phase in (REQUEST_BODY, RESPONSE_BODY):
        body = result.body or original
        if result.body and length_known:
            headers.setdefault("content-type", result.content_type)
            headers["content-length"] = str(len(body or b""))
            if decompressed and "content-encoding" not in headers:
                remove.append("content-encoding")
    if response_phase and status != 200:
        headers[":status"] = str(status)
    if not headers and not remove and body is None:
        return CONTINUE[phase]
    common = pb.CommonResponse()
    if headers or remove:
        common.header_mutation.CopyFrom(pb.HeaderMutation(
            set_headers=[_header(k, v) for k, v in headers.items()], remove_headers=remove))
    if body is not None:
        common.body_mutation.body = body
    return _serialize(phase, common)
