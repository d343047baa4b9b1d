"""The openinference trigger: a KServe v2 / Triton inference server in front of a function.

REST (with the binary tensor data extension) and gRPC (``inference.GRPCInferenceService``)
share one worker pool. The trigger only routes: it answers health and metadata
itself and hands each inference request's bytes to a worker, which decodes the
tensors, runs the handler and encodes the response (``runtime.inference``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from aiohttp import web
from aiohttp.web_request import BaseRequest
from pydantic import AliasChoices, Field, field_validator, model_validator

from core.config import Address
from core.http_body import BodyError
from core.http_server import BoundHTTPServer, json_error, read_body
from core.sockets import bind_grpc_server, bind_socket
from runtime.events import RawEvent, new_event_id
from runtime.inference.errors import InferenceError
from runtime.inference.model import ModelSpec, TensorSpec, checker, metadata, spec_to_wire
from runtime.inference.rest import HEADER_LENGTH
from runtime.inference.tensors import DTYPES
from runtime.memory import keep_large_buffers
from runtime.pool import WorkerUnavailable
from runtime.responses import JSON, RawResponse, dump_json
from triggers.base import Trigger, TriggerAttributes
from triggers.openinference.grpc_service import GRPCService

SERVER_NAME = "nuclio-py-processor"
SERVER_VERSION = "0.1.0"
PLATFORM = "nuclio_python"
EXTENSIONS = ["binary_tensor_data"]
_MODELS = "/v2/models/"


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class TensorAttributes(TriggerAttributes):
    name: str = Field(min_length=1)
    datatype: str = Field(validation_alias=_alias("datatype", "data_type", "dataType"))
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"expected one of {', '.join(DTYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _dimensions(cls, value: list[int]) -> list[int]:
        if any(d < -1 for d in value):
            raise ValueError("dimensions must be >= 0, or -1 for any size")
        return value


class OpenInferenceAttributes(TriggerAttributes):
    model_name: str = Field("model", min_length=1,
                            validation_alias=_alias("model_name", "modelName"))
    model_version: str = Field("1", validation_alias=_alias("model_version", "modelVersion"))
    rest_port: int = Field(8080, ge=0, le=65535, validation_alias=_alias("rest_port", "restPort"))
    grpc_port: int = Field(9000, ge=0, le=65535, validation_alias=_alias("grpc_port", "grpcPort"))
    enable_rest: bool = Field(True, validation_alias=_alias("enable_rest", "enableREST",
                                                            "enableRest"))
    enable_grpc: bool = Field(True, validation_alias=_alias("enable_grpc", "enableGRPC",
                                                            "enableGrpc"))
    input_tensors: list[TensorAttributes] = Field(
        default_factory=list, validation_alias=_alias("input_tensors", "inputTensors"))
    output_tensors: list[TensorAttributes] = Field(
        default_factory=list, validation_alias=_alias("output_tensors", "outputTensors"))
    # Largest REST request body and gRPC message accepted (413 / RESOURCE_EXHAUSTED beyond).
    max_request_bytes: int = Field(64 << 20, ge=1, validation_alias=_alias(
        "max_request_bytes", "maxRequestBytes"))
    max_grpc_message_bytes: int = Field(64 << 20, ge=1, validation_alias=_alias(
        "max_grpc_message_bytes", "maxGrpcMessageBytes"))

    @model_validator(mode="after")
    def _one_protocol(self) -> OpenInferenceAttributes:
        if not (self.enable_rest or self.enable_grpc):
            raise ValueError("enable_rest and enable_grpc are both false; expected at least "
                             "one protocol enabled")
        for what, tensors in (("input_tensors", self.input_tensors),
                              ("output_tensors", self.output_tensors)):
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                raise ValueError(f"{what}: tensor names must be unique, got {names}")
        return self

    def model_spec(self) -> ModelSpec:
        def tensors(items: list[TensorAttributes]) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in items)

        return ModelSpec(self.model_name, self.model_version, tensors(self.input_tensors),
                         tensors(self.output_tensors))


class OpenInferenceTrigger(Trigger):
    kind = "openinference"
    Attributes = OpenInferenceAttributes
    attributes: OpenInferenceAttributes
    _rest: BoundHTTPServer | None = None
    _grpc: grpc.aio.Server | None = None
    _grpc_stopping: asyncio.Future[Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = self.attributes.model_spec()
        # Every event names the codec and the model; the worker needs nothing else.
        self._rest_codec = ("openinference-rest", spec_to_wire(self.spec))
        self._grpc_codec = ("openinference-grpc", spec_to_wire(self.spec))
        self._serving = False
        # The metadata documents, for REST as JSON here and for gRPC as messages (built from
        # the same dicts once the message classes can be chosen, see GRPCService).
        self.model_metadata = metadata(self.spec, PLATFORM)
        self.server_metadata = {"name": SERVER_NAME, "version": SERVER_VERSION,
                                "extensions": EXTENSIONS}
        self._metadata_json = dump_json(self.model_metadata)
        self._server_json = dump_json(self.server_metadata)
        self._host = ""

    # -- life cycle ---------------------------------------------------------------------
    def listen_ports(self) -> list[int]:
        attrs = self.attributes
        return ([attrs.rest_port] if attrs.enable_rest else []) + \
            ([attrs.grpc_port] if attrs.enable_grpc else [])

    def bind(self, default_host: str) -> None:
        attrs = self.attributes
        path = f"{self.config.yaml_path}.attributes"
        self._host = default_host
        if attrs.enable_rest:
            address = Address(default_host, attrs.rest_port)
            self._rest = BoundHTTPServer(self._handle_rest,
                                         bind_socket(address, f"{path}.rest_port"),
                                         client_max_size=attrs.max_request_bytes)
        if attrs.enable_grpc:
            size = attrs.max_grpc_message_bytes
            self._grpc, self._grpc_port = bind_grpc_server(
                Address(default_host, attrs.grpc_port), f"{path}.grpc_port",
                [("grpc.max_receive_message_length", size),
                 ("grpc.max_send_message_length", size)])
            self._grpc.add_generic_rpc_handlers((GRPCService(self).handler(),))

    async def start(self) -> None:
        keep_large_buffers()  # tensors pass through here to process workers, too
        if self._rest is not None:
            await self._rest.start()
        if self._grpc is not None:
            await self._grpc.start()
        self._serving = True
        self.logger.info_with("OpenInference trigger listening", trigger=self.name,
                              model=self.spec.name, version=self.spec.version,
                              rest=f"{self._host}:{self._rest.port}" if self._rest else None,
                              grpc=f"{self._host}:{self._grpc_port}" if self._grpc else None,
                              workers=self.pool.size)

    @property
    def ready(self) -> bool:
        return self._serving and self.pool.ready

    async def stop_accepting(self) -> None:
        self._serving = False
        if self._rest is not None:
            self._rest.stop_listening()
        if self._grpc is not None:
            # New calls are refused at once; calls in flight get the drain's time.
            self._grpc_stopping = asyncio.ensure_future(
                self._grpc.stop(self.config.termination_timeout))

    async def close(self) -> None:
        if self._rest is not None:
            await self._rest.shutdown(1.0)
        if self._grpc_stopping is not None:
            await self._grpc_stopping
        elif self._grpc is not None:
            await self._grpc.stop(0)

    # -- inference, shared by both protocols -------------------------------------------------
    async def infer(self, body: bytes, headers: dict[str, str], grpc_call: bool
                    ) -> RawResponse:
        """Runs one request through the pool; WorkerUnavailable becomes a 503."""
        raw = RawEvent(new_event_id(), body, "", headers, {}, "POST", "", "", time.time(),
                       self.kind, self.name, None, None,
                       self._grpc_codec if grpc_call else self._rest_codec)
        try:
            result = await self.pool.submit(raw)
        except WorkerUnavailable as exc:
            self.metrics.rejected("no_worker")
            return RawResponse(503, {}, dump_json({"error": str(exc)}), JSON, raw.id)
        assert isinstance(result, RawResponse)
        return result

    # -- REST -------------------------------------------------------------------------------
    async def _handle_rest(self, request: BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(_MODELS):
            return await self._model_route(request, path[len(_MODELS):].split("/"))
        if request.method != "GET":
            return json_error(405, f"{request.method} is not allowed on {path}")
        if path in ("/v2", "/v2/"):
            return web.Response(body=self._server_json, content_type=JSON)
        if path == "/v2/health/live":
            return web.Response(body=b'{"live":true}', content_type=JSON)
        if path == "/v2/health/ready":
            return self._ready_response({"ready": self.ready})
        return json_error(404, f"no route {path}; expected /v2, /v2/health/... or "
                               f"/v2/models/{self.spec.name}/...")

    def _ready_response(self, doc: dict[str, Any]) -> web.Response:
        return web.Response(status=200 if self.ready else 503, body=dump_json(doc),
                            content_type=JSON)

    async def _model_route(self, request: BaseRequest, parts: list[str]) -> web.StreamResponse:
        name, rest = parts[0], parts[1:]
        version = ""
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        try:
            self.check_model(name, version)
        except InferenceError as exc:
            return json_error(exc.status_code, exc.message)
        action = "/".join(rest)
        if action == "infer":
            if request.method != "POST":
                return json_error(405, "infer takes POST")
            return await self._rest_infer(request)
        if request.method != "GET":
            return json_error(405, f"{request.method} is not allowed here")
        if action == "":
            return web.Response(body=self._metadata_json, content_type=JSON)
        if action == "ready":
            return self._ready_response({"name": self.spec.name, "ready": self.ready})
        return json_error(404, f"no model route {action!r}; expected '', 'ready' or 'infer'")

    async def _rest_infer(self, request: BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        if not self._serving:
            return json_error(503, "the server is shutting down")
        try:
            body = await read_body(request, self.attributes.max_request_bytes)
        except BodyError as exc:
            self.metrics.rejected(exc.reason)
            return json_error(exc.status, str(exc))
        length = request.headers.get(HEADER_LENGTH)
        result = await self.infer(body, {HEADER_LENGTH: length} if length is not None else {},
                                  grpc_call=False)
        headers = dict(result.headers)
        headers["Content-Type"] = result.content_type
        if result.status != 200 and result.content_type != JSON:
            response = json_error(result.status, result.body.decode("utf-8", "replace"))
        else:
            response = web.Response(status=result.status, body=result.body, headers=headers)
        self.metrics.observe_latency(time.perf_counter() - started)
        return response

    def check_model(self, name: str, version: str) -> None:
        """Raises InferenceError (404) for another model or version, as the worker would."""
        checker(self.spec).model(name, version)
