"""`broker_from`: what `Tether(broker=...)` and `$TETHER_BROKER` turn into."""

from __future__ import annotations

import pytest

from tether import ConfigurationError, Tether
from tether.brokers import BROKER_ENV, MemoryBroker, broker_from
from tether.brokers.redis import RedisBroker


def test_a_broker_object_is_taken_as_it_is() -> None:
    broker = MemoryBroker(maxlen=3)
    assert broker_from(broker) is broker


def test_memory_url_and_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROKER_ENV, raising=False)
    assert isinstance(broker_from("memory://"), MemoryBroker)
    assert isinstance(broker_from(None), MemoryBroker)


def test_the_environment_chooses_when_the_app_names_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKER_ENV, "redis://127.0.0.1:6390/2")
    broker = broker_from(None)
    assert isinstance(broker, RedisBroker)
    assert broker.url == "redis://127.0.0.1:6390/2"
    # The app's own choice wins over the environment.
    assert isinstance(broker_from("memory://"), MemoryBroker)
    assert isinstance(Tether().events.broker, RedisBroker)


def test_redis_url_options_are_tethers_and_the_rest_stays_in_the_url() -> None:
    broker = broker_from("redis://127.0.0.1:6390/1?maxlen=50&timeout=0.5&client_name=web")
    assert isinstance(broker, RedisBroker)
    assert (broker.maxlen, broker.timeout) == (50, 0.5)
    assert broker.url == "redis://127.0.0.1:6390/1?client_name=web"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("kafka://localhost", "unknown broker; use memory:// or redis://"),
        ("redis://127.0.0.1:6390/0?maxlen=many", "maxlen='many' is not a number"),
        (42, "takes a Broker or a URL, not 42"),
    ],
)
def test_bad_values_are_configuration_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        broker_from(value)


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKER_ENV, "nats://x")
    with pytest.raises(ConfigurationError, match=r"\$TETHER_BROKER='nats://x'"):
        Tether()
