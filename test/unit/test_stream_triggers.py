"""Unit tests of the stream triggers' pure parts: ack rules, back-off, URLs, redaction,
queue names, the in-flight bound."""

from __future__ import annotations

import asyncio

import pytest

from core.config import ConfigError
from core.function_config import ResolvedTrigger
from triggers.mqtt import _Broker
from triggers.nats.connection import Redactor, checked_nats_url
from triggers.nats.core import expand_queue_name
from triggers.nats.jetstream import nak_delay
from triggers.stream_flow import InFlight, handled


def trigger(url: str | None) -> ResolvedTrigger:
    return ResolvedTrigger("t", "t", "nats", 1, 10.0, 10.0, url, {}, None, "spec.triggers.t")


@pytest.mark.parametrize(("status", "ok"), [(200, True), (204, True), (302, True),
                                            (400, True), (404, True), (408, False),
                                            (429, False), (500, False), (503, False)])
def test_which_statuses_count_as_handled(status: int, ok: bool) -> None:
    assert handled(status) is ok


def test_nak_delay_doubles_up_to_the_cap() -> None:
    assert [nak_delay(0.5, 3.0, n) for n in (1, 2, 3, 4, 5, 100)] == [0.5, 1, 2, 3, 3, 3]
    assert nak_delay(0.0, 3.0, 4) == 0.0


def test_nats_urls() -> None:
    assert checked_nats_url(trigger(" nats://h:4222 ")) == "nats://h:4222"
    assert checked_nats_url(trigger("nats://a:1, nats://b:2")) == "nats://a:1,nats://b:2"
    for bad in (None, "", "http://h:1", "nats://", "nats://h:99999"):
        with pytest.raises(ConfigError, match=r"^spec\.triggers\.t\.url: "):
            checked_nats_url(trigger(bad))
    with pytest.raises(ConfigError) as error:
        checked_nats_url(trigger("http://me:secret@h:1"))
    assert "secret" not in str(error.value)


def test_redactor_hides_passwords_and_tokens() -> None:
    redact = Redactor("nats://me:pa%40ss@h:4222", ["tok3n", None])
    text = redact("cannot reach nats://me:pa%40ss@h:4222 with pa@ss or tok3n")
    assert "pa@ss" not in text and "pa%40ss" not in text and "tok3n" not in text
    assert "nats://h:4222" in text


def test_queue_name_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUCLIO_FUNCTION_NAME", "fn")
    monkeypatch.setenv("NUCLIO_NAMESPACE", "ns")
    assert expand_queue_name("{{.Namespace}}.{{.Name}}-{{ .Id }}", "trig") == "ns.fn-trig"
    assert expand_queue_name("plain", "trig") == "plain"


def test_mqtt_broker_urls() -> None:
    broker = _Broker("tcp://u:p%40w@h", "spec.triggers.m")
    assert (broker.host, broker.port, broker.tls) == ("h", 1883, False)
    assert (broker.username, broker.password, broker.public) == ("u", "p@w", "tcp://h")
    assert _Broker("ssl://h", "x").port == 8883
    for bad in (None, "http://h", "tcp://"):
        with pytest.raises(ConfigError, match=r"^spec\.triggers\.m\.url: "):
            _Broker(bad, "spec.triggers.m")


def test_in_flight_never_exceeds_its_limit() -> None:
    async def scenario() -> tuple[int, int]:
        inflight, peak, done = InFlight(3), 0, 0

        async def work() -> None:
            nonlocal peak, done
            peak = max(peak, inflight.count)
            await asyncio.sleep(0.01)
            done += 1
        for _ in range(20):
            await inflight.wait_free()
            inflight.spawn(work())
        assert await inflight.idle(5)
        return peak, done
    peak, done = asyncio.run(scenario())
    assert peak == 3 and done == 20
