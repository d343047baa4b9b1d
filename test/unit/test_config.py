"""Config parsing rules that need no running processor."""

import pytest
import yaml

from core.config import (
    ConfigError,
    parse_address,
    parse_go_duration,
    unknown_keys,
)
from core.function_config import load_function_config
from triggers.http import HTTPAttributes


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("2.5s", 2.5),
    ("0", 0.0), ("100us", 1e-4), (3, 3.0), ("1h2m3s4ms", 3723.004),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "10", "s", "-1s", "", True, [1]])
def test_bad_go_durations(bad):
    with pytest.raises(ValueError):
        parse_go_duration(bad)


def test_addresses():
    assert str(parse_address(":8080", "x")) == "0.0.0.0:8080"
    assert str(parse_address(":8080", "x", "127.0.0.1")) == "127.0.0.1:8080"
    assert str(parse_address("127.0.0.1:9", "x")) == "127.0.0.1:9"
    assert str(parse_address("[::1]:9", "x")) == "::1:9"
    assert str(parse_address("8081", "x")) == "0.0.0.0:8081"
    with pytest.raises(ConfigError, match=r"a\.b: expected a listen address"):
        parse_address("host:port", "a.b")


def _load(tmp_path, spec):
    path = tmp_path / "function.yaml"
    (tmp_path / "main.py").write_text("def handler(context, event):\n    return 'x'\n")
    path.write_text(yaml.safe_dump({"metadata": {"name": "f"}, "spec": spec}))
    return load_function_config(str(path))


def test_trigger_defaults_follow_nuclio(tmp_path):
    config = _load(tmp_path, {"handler": "main:handler", "triggers": {
        "a": {"kind": "http", "attributes": {"port": 1}},
        "b": {"kind": "http", "maxWorkers": 3, "workerAvailabilityTimeoutMilliseconds": 0},
        "c": {"kind": "http", "numWorkers": 2, "maxWorkers": 5, "name": "named"},
        "d": {"kind": "http", "disabled": True},
    }})
    by_key = {t.key: t for t in config.triggers}
    assert set(by_key) == {"a", "b", "c"}  # disabled triggers do not run
    assert (by_key["a"].name, by_key["a"].num_workers, by_key["a"].availability_timeout) == \
        ("a", 1, 10.0)
    assert (by_key["b"].num_workers, by_key["b"].availability_timeout) == (3, 0.0)
    assert (by_key["c"].name, by_key["c"].num_workers) == ("named", 2)
    assert config.function_dir == str(tmp_path)


def test_default_http_trigger_rules(tmp_path):
    assert [t.name for t in _load(tmp_path, {"handler": "main:handler"}).triggers] == \
        ["default-http"]
    assert _load(tmp_path, {"handler": "main:handler",
                            "disableDefaultHTTPTrigger": True}).triggers == []
    named = _load(tmp_path, {"handler": "main:handler",
                             "triggers": {"web": {"kind": "http"}}}).triggers
    assert [t.name for t in named] == ["web"]


def test_env_values_become_text(tmp_path):
    spec = _load(tmp_path, {"handler": "main:handler", "env": [
        {"name": "A", "value": 5}, {"name": "B", "value": True}, {"name": "C"}]}).function.spec
    assert [(e.name, e.value) for e in spec.env] == [("A", "5"), ("B", "true"), ("C", "")]


def test_errors_name_the_yaml_path(tmp_path):
    with pytest.raises(ConfigError, match=r"spec\.triggers\.web\.numWorkers"):
        _load(tmp_path, {"handler": "main:handler",
                         "triggers": {"web": {"kind": "http", "numWorkers": "many"}}})
    with pytest.raises(ConfigError, match=r"spec\.eventTimeout: .*Go duration"):
        _load(tmp_path, {"handler": "main:handler", "eventTimeout": "soon"})
    with pytest.raises(ConfigError, match=r"spec\.handler: expected 'module:function'"):
        _load(tmp_path, {"handler": "main"})


def test_unknown_attribute_warnings_suggest_fixes():
    warnings = unknown_keys(HTTPAttributes, {"port": 1, "maxRequestBodySizee": 3, "zzz": 1})
    assert warnings == ["unknown attribute 'maxRequestBodySizee' (did you mean "
                        "'maxRequestBodySize'?)", "unknown attribute 'zzz'"]


def test_cron_dialect_translation():
    from triggers.cron import CronAttributes, to_croniter

    assert to_croniter("*/5 * * * * *") == "* * * * * */5"  # seconds move to the end
    assert to_croniter("0 */2 * * *") == "0 */2 * * *"
    assert CronAttributes(schedule="@every 1m30s").period() == 90.0
    assert CronAttributes(interval="250ms").period() == 0.25
    assert CronAttributes(schedule="@hourly").period() is None
