"""The committed gRPC modules must be what `make protos` generates from the .proto."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("open_inference_pb2.py", "open_inference_pb2.pyi", "open_inference_pb2_grpc.py")


def _without_version_stamps(text: str) -> str:
    """grpcio-tools stamps its own version in the output; the protocol is what must match."""
    text = re.sub(r"\b\d+(\.\d+)+\b", "VERSION", text)
    return re.sub(r"ValidateProtobufRuntimeVersion\([^)]*\)", "ValidateProtobufRuntimeVersion()",
                  text)


def test_generated_modules_match_the_proto(tmp_path: Path) -> None:
    (tmp_path / "protos").mkdir()
    shutil.copy(ROOT / "protos" / "open_inference.proto", tmp_path / "protos")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
                    "--pyi_out=.", "--grpc_python_out=.", "protos/open_inference.proto"],
                   cwd=tmp_path, check=True)
    for name in GENERATED:
        fresh = (tmp_path / "protos" / name).read_text()
        committed = (ROOT / "protos" / name).read_text()
        assert _without_version_stamps(committed) == _without_version_stamps(fresh), (
            f"protos/{name} is stale: run `make protos` and commit the result")


def test_service_is_the_open_inference_one() -> None:
    # In a child process: tritonclient (imported by other tests) registers the same
    # message names in protobuf's default pool.
    code = ("from protos import open_inference_pb2 as m; "
            "s = m.DESCRIPTOR.services_by_name['GRPCInferenceService']; "
            "print(s.full_name, *sorted(x.name for x in s.methods))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["inference.GRPCInferenceService", "ModelInfer", "ModelMetadata",
                   "ModelReady", "ServerLive", "ServerMetadata", "ServerReady"]
