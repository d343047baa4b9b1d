"""Listening sockets for triggers, sinks and the health server, bound before anything listens.

Binding early makes a taken port a ConfigError naming its YAML path, at start-up
rather than after workers have started.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import TYPE_CHECKING, Any

from core.config import Address, ConfigError

if TYPE_CHECKING:
    import grpc


_WILDCARDS = ("0.0.0.0", "::")


class AddressBook:
    """Addresses claimed so far, with the YAML path that asked for each. Two SO_REUSEADDR
    sockets may bind one port on Linux while neither listens, so the kernel would not
    catch a port named twice in the config: this does, naming both YAML paths. The
    processor keeps one book for its lifetime; a renderer that binds nothing (``processor
    kube render``) checks a config against a book of its own."""

    def __init__(self) -> None:
        self._claims: dict[tuple[str, int], str] = {}

    def check(self, address: Address, yaml_path: str) -> None:
        if address.port == 0:
            return
        for (host, port), owner in self._claims.items():
            if port == address.port and (host == address.host or host in _WILDCARDS
                                         or address.host in _WILDCARDS):
                raise ConfigError(f"{yaml_path}: port {address.port} on {address.host} is "
                                  f"already used by {owner}; expected a free port")

    def claim(self, address: Address, yaml_path: str) -> None:
        self.check(address, yaml_path)
        self._claims[(address.host, address.port)] = yaml_path


# What this process has bound.
_BOUND = AddressBook()


def claim_address(address: Address, yaml_path: str) -> None:
    """Records an address a server other than ours (gRPC) binds, so that a port named
    twice in the config is a ConfigError naming both YAML paths."""
    _BOUND.claim(address, yaml_path)


def bind_socket(address: Address, yaml_path: str) -> socket.socket:
    """Binds (without listening) so a taken port fails at start-up, with its YAML path."""
    _BOUND.check(address, yaml_path)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{yaml_path}: port {address.port} on {address.host} is already "
                              "in use; expected a free port") from None
        raise ConfigError(f"{yaml_path}: cannot listen on {address}: {exc.strerror}") from None
    sock.setblocking(False)
    _BOUND.claim(address, yaml_path)
    return sock


def bind_grpc_server(address: Address, yaml_path: str, options: list[tuple[str, Any]]
                     ) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server bound to ``address`` (not started) and its port. SO_REUSEPORT is
    off so that a port another process holds fails here instead of being shared."""
    import grpc  # only the gRPC triggers pay for the import

    claim_address(address, yaml_path)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options])
    host = f"[{address.host}]" if ":" in address.host else address.host
    try:
        port = server.add_insecure_port(f"{host}:{address.port}")
    except RuntimeError:  # grpcio raises where older versions returned 0
        port = 0
    if port == 0:
        raise ConfigError(f"{yaml_path}: port {address.port} on {address.host} is already "
                          "in use; expected a free port")
    return server, port


class Listener:
    """A server on a socket bound at start-up (``bind_socket``): the port it got, and
    closing it whether or not it ever started serving."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
