"""Embedded PostgreSQL and SeaweedFS for when no DATABASE_URL / S3_ENDPOINT is configured.

Both are real servers that keep their data under the data directory across restarts and stop when
Flick stops. A server left running by a Flick that was SIGKILLed is reused (PostgreSQL) or killed
(SeaweedFS) on the next start, so restarts never pile up duplicates.

`lock` guards the data directory, `postgres` and `seaweed` run one server each, and `processes`
holds what both need to start and stop a server.
"""

from flick.embedded.lock import MIN_FREE_BYTES, DataDirLock, prepare_data_dir
from flick.embedded.postgres import EmbeddedPostgres
from flick.embedded.processes import STOP_SECONDS
from flick.embedded.seaweed import EmbeddedSeaweed

__all__ = [
    "MIN_FREE_BYTES",
    "STOP_SECONDS",
    "DataDirLock",
    "EmbeddedPostgres",
    "EmbeddedSeaweed",
    "prepare_data_dir",
]
