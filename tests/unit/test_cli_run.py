"""``gridwatch run`` refuses to start on an unreachable database with one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

GRIDWATCH = Path(sys.executable).with_name("gridwatch")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


def test_an_unreachable_database_at_start_is_one_clear_error(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
        "GRIDWATCH_DB_URL": f"postgresql://gw@127.0.0.1:{closed_port()}/gw",
        "GRIDWATCH_MQTT_URL": f"mqtt://127.0.0.1:{closed_port()}",
        "GRIDWATCH_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [str(GRIDWATCH), "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "gridwatch: cannot start: the database is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
