"""The scheduler worker's consumer waits for fetches as long as the settings say, not Faust's
fixed 1.5 s (on Tansu that wait is paid at every hop through the worker)."""

from __future__ import annotations

import pytest

from flotilla.settings import load_settings
from flotilla.streams.app import create_app

pytestmark = pytest.mark.integration


async def test_the_worker_consumer_fetches_with_the_configured_wait(broker, tmp_path):
    settings = load_settings(
        overrides={"data_dir": str(tmp_path), "kafka": {"bootstrap": broker, "fetch_max_wait_ms": 77}},
        environ={},
    )
    app = create_app(settings)
    kafka_consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await kafka_consumer.start()
    try:
        assert kafka_consumer._fetcher._fetch_max_wait_ms == 77
    finally:
        await kafka_consumer.stop()
