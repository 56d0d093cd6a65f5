"""Fixtures for the payment tests: `shop`, a shopper's moves (flick.testing.shop), on the engine
that `harness` (tests/conftest.py) starts."""

from __future__ import annotations

import pytest

from flick.testing.shop import Shop


@pytest.fixture
def shop() -> Shop:
    return Shop()
