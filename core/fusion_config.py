"""platform.yaml's ``fusion`` key: several functions in one processor, calls between them.

Nuclio ignores platform keys it does not know, so the same platform.yaml stays valid
for Nuclio.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class FrontDoor(_Model):
    """The shared http listener for ``/function/<name>`` and ``/async-function/<name>``.

    It listens only where ``listenAddress`` says (no default: a deployment opens no port
    it did not ask for, and two multi-function processors on one host never clash)."""

    enabled: bool = True
    listenAddress: str | None = None
    maxRequestBodySize: int = Field(4 * 1024 * 1024, ge=0)
    # The async store and policies of the front door's /async-function routes (the shape
    # of an http trigger's ``attributes.async``; ``enabled`` is implied).
    async_: dict[str, Any] = Field(default_factory=dict, alias="async")


class FusionConfig(_Model):
    """Our key in platform.yaml (Nuclio ignores unknown platform keys): several functions
    in one processor and the calls between them."""

    frontDoor: FrontDoor = Field(default_factory=FrontDoor)
    # name -> base URL of a function hosted elsewhere (its http trigger).
    functionAddresses: dict[str, str] = Field(default_factory=dict)
    maxCallDepth: int = Field(16, ge=1, le=1000)

