"""The openinference trigger: KServe v2 / Triton REST (trigger.py) and gRPC (grpc_service.py)."""
