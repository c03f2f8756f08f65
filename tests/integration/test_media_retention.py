"""Snapshot retention on a real PostgreSQL and disk: old evidence goes with its file, unless
its event is still open or the same bytes are still cited by a newer row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from storage.media import MediaStore

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)


async def test_old_snapshots_go_unless_still_needed(database: str, tmp_path: Path) -> None:
    media = MediaStore(tmp_path / "media")
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await conn.execute(
            "INSERT INTO grid_events (id, category, type, severity, state, first_seen,"
            " last_seen, workflow) VALUES ('GE-OPEN', 'video', 'zone_intrusion', 'orange',"
            " 'dispatched', now(), now(), '{}'), ('GE-DONE', 'video', 'zone_intrusion',"
            " 'orange', 'closed', now(), now(), '{}')"
        )
        gone = await media.save(conn, b"\xff\xd8old", content_type="image/jpeg",
                                kind="snapshot", taken_at=OLD)
        closed = await media.save(conn, b"\xff\xd8closed", content_type="image/jpeg",
                                  kind="snapshot", event_id="GE-DONE", taken_at=OLD)
        still_open = await media.save(conn, b"\xff\xd8open", content_type="image/jpeg",
                                      kind="snapshot", event_id="GE-OPEN", taken_at=OLD)
        shared_old = await media.save(conn, b"\xff\xd8same", content_type="image/jpeg",
                                      kind="snapshot", taken_at=OLD)
        shared_new = await media.save(conn, b"\xff\xd8same", content_type="image/jpeg",
                                      kind="snapshot", taken_at=NOW)
        photo = await media.save(conn, b"\xff\xd8photo", content_type="image/jpeg",
                                 kind="report_photo", taken_at=OLD)
        await conn.commit()

        removed = await media.expire(conn, "snapshot", NOW - timedelta(days=30))

        kept = {
            row[0] for row in await (await conn.execute("SELECT id FROM media")).fetchall()
        }
    assert removed == 3
    assert kept == {still_open.id, shared_new.id, photo.id}
    assert not media.path_of(gone).exists() and not media.path_of(closed).exists()
    assert media.path_of(still_open).exists() and media.path_of(shared_new).exists()
    assert media.path_of(shared_old) == media.path_of(shared_new)
