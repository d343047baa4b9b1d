"""The openinference trigger's gRPC side: ``inference.GRPCInferenceService``.

ModelInfer is registered without (de)serializers: the request's bytes go to a
worker as they arrived and the worker's encoded response goes back as is, so
the processor's event loop never parses or builds tensor messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from core.metrics import TriggerMetrics
from protos.open_inference import messages
from runtime.inference.errors import InferenceError
from runtime.responses import RawResponse

SERVICE = "inference.GRPCInferenceService"

# HTTP status of a runtime or handler error -> gRPC status code.
_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_status(http_status: int) -> grpc.StatusCode:
    code = _STATUS_CODES.get(http_status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if http_status < 500 else grpc.StatusCode.INTERNAL


def error_message(result: RawResponse) -> str:
    try:
        doc = json.loads(result.body)
    except ValueError:
        return result.body.decode("utf-8", "replace") or f"status {result.status}"
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"])
    return result.body.decode("utf-8", "replace")


class InferenceServer(Protocol):
    """What the gRPC service asks of the trigger that owns it (REST and gRPC share one
    model declaration, readiness and pool; the trigger satisfies this protocol, so this
    module never imports the trigger)."""

    model_metadata: dict[str, Any]
    server_metadata: dict[str, Any]
    metrics: TriggerMetrics

    @property
    def ready(self) -> bool: ...

    async def infer(self, body: bytes, headers: dict[str, str],
                    grpc_call: bool) -> RawResponse: ...

    def check_model(self, name: str, version: str) -> None: ...


Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class GRPCService:
    def __init__(self, trigger: InferenceServer) -> None:
        self.trigger = trigger
        self.pb: Any = None
        self._model_metadata: Any = None
        self._server_metadata: Any = None

    def handler(self) -> grpc.GenericRpcHandler:
        # Looked up here, after the handler is loaded: see protos/open_inference.py.
        pb = self.pb = messages()
        self._model_metadata = pb.ModelMetadataResponse(**self.trigger.model_metadata)
        self._server_metadata = pb.ServerMetadataResponse(**self.trigger.server_metadata)

        def typed(method: Unary, request_type: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request_type.FromString,
                response_serializer=lambda message: message.SerializeToString())

        return grpc.method_handlers_generic_handler(SERVICE, {
            "ServerLive": typed(self.server_live, pb.ServerLiveRequest),
            "ServerReady": typed(self.server_ready, pb.ServerReadyRequest),
            "ModelReady": typed(self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": typed(self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": typed(self.model_metadata, pb.ModelMetadataRequest),
            # bytes in, bytes out: the worker decodes and encodes
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.model_infer),
        })

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.pb.ServerReadyResponse(ready=self.trigger.ready)

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_model(request.name, request.version, context)
        return self.pb.ModelReadyResponse(ready=self.trigger.ready)

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._server_metadata

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_model(request.name, request.version, context)
        return self._model_metadata

    async def model_infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        trigger = self.trigger
        if not trigger.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is not ready")
        result = await trigger.infer(request, {}, grpc_call=True)
        if result.status != 200:
            await context.abort(grpc_status(result.status), error_message(result))
        trigger.metrics.observe_latency(time.perf_counter() - started)
        return result.body

    async def _check_model(self, name: str, version: str,
                           context: grpc.aio.ServicerContext) -> None:
        try:
            self.trigger.check_model(name, version)
        except InferenceError as exc:
            await context.abort(grpc_status(exc.status_code), exc.message)
