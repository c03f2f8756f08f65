"""An on-disk spool of checked batches, for when the database is away.

Without it a database outage stops acknowledging MQTT messages, and the whole backlog waits
in the broker's session. With it, each batch that cannot be written is saved here (one file
a batch, written to a temporary name, fsynced, then renamed: a file that exists is whole),
acknowledged to the broker, and written to the database in order once it is back, through
the same writer and detection as a live batch. Replays are harmless: the store keeps a
reading once, and detection only sees messages stored for the first time.

It is bounded (``max_bytes``): when full, nothing more is spooled and the pipeline falls
back to holding messages unacknowledged, so the broker keeps the rest. A file that cannot
be read back (a damaged disk) is moved aside to ``damaged/``, logged and counted, never
silently dropped.

The spool belongs to one worker's data directory: a worker that restarts replays what it
left there before it takes anything new from MQTT.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from devices.messages import DeviceEvent, Heartbeat, Reading, Rejection, StatusChange
from storage.ingest_writer import IngestBatch

log = logging.getLogger(__name__)

_MAGIC = b"GWSPOOL1"
_SUFFIX = ".batch"


class _SpooledBatch(msgspec.Struct, array_like=True):
    readings: list[Reading]
    heartbeats: list[Heartbeat]
    events: list[DeviceEvent]
    statuses: list[StatusChange]
    rejections: list[Rejection]
    duplicates: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_SpooledBatch)


def encode_batch(batch: IngestBatch) -> bytes:
    """The file's bytes: magic, CRC-32 of the body, the body (msgpack)."""
    body = _encoder.encode(
        _SpooledBatch(
            batch.readings,
            batch.heartbeats,
            batch.events,
            batch.statuses,
            batch.rejections,
            batch.duplicates,
        )
    )
    return _MAGIC + zlib.crc32(body).to_bytes(4, "big") + body


class DamagedBatch(ValueError):
    """A spool file whose bytes are not a whole batch."""


def merge(batches: list[IngestBatch]) -> IngestBatch:
    """Several batches as one, in order."""
    if len(batches) == 1:
        return batches[0]
    out = IngestBatch()
    for b in batches:
        out.readings += b.readings
        out.heartbeats += b.heartbeats
        out.events += b.events
        out.statuses += b.statuses
        out.rejections += b.rejections
        out.duplicates += b.duplicates
    return out


def decode_batch(data: bytes) -> IngestBatch:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise DamagedBatch("not a spool file")
    crc, body = data[len(_MAGIC) : len(_MAGIC) + 4], data[len(_MAGIC) + 4 :]
    if zlib.crc32(body).to_bytes(4, "big") != crc:
        raise DamagedBatch("checksum mismatch")
    try:
        s = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DamagedBatch(str(exc)) from exc
    return IngestBatch(
        readings=s.readings,
        heartbeats=s.heartbeats,
        events=s.events,
        statuses=s.statuses,
        rejections=s.rejections,
        duplicates=s.duplicates,
    )


@dataclass(frozen=True, slots=True)
class Spooled:
    """One batch waiting in the spool."""

    path: Path
    size: int
    batch: IngestBatch


class DiskSpool:
    """Batches in files ``<seq>.batch`` under ``root``; oldest first. Not thread-safe: one
    writer loop owns it (the file work itself may run on a thread)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*.tmp"):  # never renamed: its batch was not acknowledged
            stale.unlink()
        self._files: list[tuple[int, Path, int]] = sorted(
            (int(p.stem), p, p.stat().st_size) for p in root.glob(f"*{_SUFFIX}") if p.stem.isdigit()
        )
        self._next = self._files[-1][0] + 1 if self._files else 1
        self.bytes = sum(size for _, _, size in self._files)
        self.spooled_batches = 0
        self.spooled_messages = 0
        self.damaged = 0

    def __len__(self) -> int:
        return len(self._files)

    def empty(self) -> bool:
        return not self._files

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.max_bytes

    def append(self, data: bytes, messages: int) -> Path:
        """Save one encoded batch durably (call on a thread: it fsyncs)."""
        seq = self._next
        self._next += 1
        path = self.root / f"{seq:016d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)
        self._files.append((seq, path, len(data)))
        self.bytes += len(data)
        self.spooled_batches += 1
        self.spooled_messages += messages
        return path

    def oldest(self) -> Spooled | None:
        """The oldest whole batch; damaged files on the way are moved aside."""
        run = self.oldest_run(1)
        return run[0] if run else None

    def oldest_run(self, max_messages: int) -> list[Spooled]:
        """The oldest batches, in order, holding up to ``max_messages`` together (at least
        one), so that many small batches spooled in an outage are written back as few
        transactions. Damaged files on the way are moved aside."""
        run: list[Spooled] = []
        total = 0
        while len(run) < len(self._files):
            _, path, size = self._files[len(run)]
            item = self._read(path, size)
            if item is None:
                continue  # set aside: the next file has taken its place
            count = len(item.batch) + item.batch.duplicates
            if run and total + count > max_messages:
                break
            run.append(item)
            total += count
        return run

    def _read(self, path: Path, size: int) -> Spooled | None:
        try:
            return Spooled(path, size, decode_batch(path.read_bytes()))
        except (OSError, DamagedBatch) as exc:
            self._set_aside(path, exc)
            return None

    def remove(self, item: Spooled) -> None:
        """The batch is in the database now."""
        item.path.unlink(missing_ok=True)
        self._drop(item.path)

    def paths(self) -> Iterator[Path]:
        return (p for _, p, _ in self._files)

    def _set_aside(self, path: Path, why: Exception) -> None:
        damaged = self.root / "damaged"
        damaged.mkdir(exist_ok=True)
        log.error("spool file unreadable, moved aside (%s)", why, extra={"path": str(path)})
        try:
            path.replace(damaged / path.name)
        except OSError:
            log.exception("could not move a damaged spool file")
        self.damaged += 1
        self._drop(path)

    def _drop(self, path: Path) -> None:
        for i, (_, p, size) in enumerate(self._files):
            if p == path:
                del self._files[i]
                self.bytes -= size
                return


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
