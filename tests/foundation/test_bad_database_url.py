"""A database URL that cannot work is one clear error naming DATABASE_URL, never its password."""

from __future__ import annotations

import pytest

from flick.errors import ServiceError
from flick.models import db


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://flick:hunter2secret@127.0.0.1:1/flick", "127.0.0.1:1/flick"),
        ("postgresql://flick:hunter2secret@127.0.0.1:5432/flick_no_such_db", "flick_no_such_db"),
        ("mysql//flick:hunter2secret@nowhere", "not a postgresql:// URL"),
    ],
)
async def test_wrong_database_url_is_one_clear_line(url: str, says: str) -> None:
    with pytest.raises(ServiceError) as info:
        async with db.connection_pool(url, 1, 1):
            pass
    text = str(info.value)
    assert "DATABASE_URL" in text and says in text
    assert "hunter2secret" not in text and "\n" not in text
    assert db.DB.pool is None  # nothing half-opened is left behind
