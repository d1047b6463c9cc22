import logging

import pytest

from cachekit import metrics
from cachekit.config import reset_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    """Every test starts from default settings and empty metrics."""
    for var in list(__import__("os").environ):
        if var.startswith("CACHEKIT_"):
            monkeypatch.delenv(var)
    reset_settings()
    metrics.reset()
    yield
    reset_settings()


@pytest.fixture
def cachekit_log(caplog):
    caplog.set_level(logging.WARNING, logger="cachekit")
    return caplog
