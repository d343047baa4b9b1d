"""``processor kube invoke``: what a kube-mode CronJob's pod runs on each tick.

It reads the cron trigger from the function.yaml (where the long-running pods have it
disabled), builds the trigger's event with the trigger's own model, and sends it to
the function's HTTP trigger with ``x-nuclio-invoke-trigger: cron`` (Nuclio's header).
Exit 0 on a 2xx answer, 1 otherwise (so the Job's backoffLimit retries), 2 for a
configuration problem.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import yaml

from core.config import ConfigError, validate_model
from triggers.cron import CronAttributes

INVOKE_HEADER = "x-nuclio-invoke-trigger"
BODY_SHOWN = 500


def cron_event(config_path: str, key: str) -> CronAttributes:
    try:
        with open(config_path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc}") from None
    triggers: dict[str, Any] = ((raw.get("spec") or {}).get("triggers") or {})
    trigger = triggers.get(key)
    if not isinstance(trigger, dict) or trigger.get("kind") != "cron":
        raise ConfigError(f"spec.triggers.{key}: expected a cron trigger in {config_path}")
    return validate_model(CronAttributes, trigger.get("attributes") or {},
                          f"spec.triggers.{key}.attributes")


def invoke(config_path: str, key: str, url: str, timeout: float) -> int:
    raw = cron_event(config_path, key).event.raw_event("cron", key)
    headers = {**raw.headers, "Content-Type": raw.content_type, INVOKE_HEADER: "cron"}
    request = urllib.request.Request(url.rstrip("/") + raw.url, data=raw.body or None,
                                     headers=headers, method=raw.method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read(BODY_SHOWN)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(BODY_SHOWN)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        print(f"cron invoke failed: {url}: {exc}", file=sys.stderr)
        return 1
    # The Job's log (kubectl logs) shows what the function answered.
    print(f"cron invoke: {raw.method} {raw.url} -> {status} "
          f"{body.decode('utf-8', 'replace')}", file=sys.stderr)
    return 0 if 200 <= status <= 299 else 1
