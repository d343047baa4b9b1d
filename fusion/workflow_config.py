"""``spec.workflow`` in function.yaml: a function made of ordered calls, no handler code.

```yaml
spec:
  workflow:
    timeout: 30s              # optional: the whole chain (else the event timeout)
    steps:
      - name: rotate          # unique; the X-Workflow-Failed-Step and Server-Timing name
        function: transpose   # hosted here or reachable remotely
        method: POST          # optional, default POST
        path: /               # optional, default "/"; may carry a query (?size=128)
        timeout: 5s           # optional, seconds or a Go duration
```

Everything is validated when the config loads, so that a typo is an exit 2
naming the YAML path rather than a 5xx on the first request. Whether each
step's function exists is checked separately (``check_targets``), once the
processor knows which functions it hosts and which have addresses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from core.config import ConfigError, Duration, validate_model

# An HTTP method is a token (RFC 9110 9.1); upper case by convention, enforced here.
_METHOD = re.compile(r"^[A-Z]+$")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("expected a positive duration")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class WorkflowStep(BaseModel):
    """One call in the chain: its output (body, content type) is the next step's input."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(min_length=1)
    function: str = Field(min_length=1)
    method: str = "POST"
    path: str = "/"
    # None: what is left of the workflow's timeout (or the event timeout).
    timeout: PositiveDuration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # It becomes a header value (X-Workflow-Failed-Step): printable ASCII only.
        if not all(" " <= c <= "~" for c in value):
            raise ValueError(f"expected printable ASCII, got {value!r}")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if not _METHOD.match(value):
                raise ValueError(f"expected an HTTP method such as POST, got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {value!r}")
        return value


class WorkflowSpec(BaseModel):
    """The whole chain and its optional overall timeout."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    steps: list[WorkflowStep]
    timeout: PositiveDuration | None = None


def parse_workflow(raw: Any, yaml_path: str) -> WorkflowSpec:
    """The validated workflow at ``yaml_path`` (where ``raw`` sits, e.g. ``spec.workflow``);
    ConfigError naming the exact path of the first problems otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{yaml_path}: expected a mapping with 'steps', got {raw!r}")
    steps = raw.get("steps")
    if steps is None or steps == []:
        raise ConfigError(f"{yaml_path}.steps: a workflow needs at least one step")
    spec = validate_model(WorkflowSpec, raw, yaml_path)
    seen: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        if step.name in seen:
            raise ConfigError(f"{yaml_path}.steps[{index}].name: {step.name!r} is already the "
                              f"name of {yaml_path}.steps[{seen[step.name]}]; step names "
                              "must be unique")
        seen[step.name] = index
    return spec


def check_targets(spec: WorkflowSpec, yaml_path: str, is_known: Callable[[str], bool]) -> None:
    """ConfigError for the first step whose function is neither hosted in this processor
    nor given an address (``is_known``, from the processor, answers that): found at start
    rather than as a 404 in the middle of a chain."""
    for index, step in enumerate(spec.steps):
        if not is_known(step.function):
            raise ConfigError(
                f"{yaml_path}.steps[{index}].function: function {step.function!r} is not "
                "hosted in this processor and has no address (fusion.functionAddresses in "
                f"platform.yaml, or NUCLIO_FUNCTION_<NAME>_URL)")
