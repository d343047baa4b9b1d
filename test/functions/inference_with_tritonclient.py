"""An inference handler that also imports tritonclient's gRPC module (as one calling a
Triton server would): its ``inference.*`` protobuf messages must not clash with ours."""

import tritonclient.grpc  # noqa: F401


def handler(context, event):
    return {"y": event.inputs["x"] + 1}
