"""The change-log reader's ordering rule, against a model of PostgreSQL transactions.

Writers take an xid at their first write, a ``seq`` when they insert into the log (later,
possibly after other writers took theirs), then commit or roll back. A reader reads the
committed rows after its cursor and hands on what the :class:`Settler` lets go, taking a
fresh xid as horizon when it first sees a gap. Whatever the interleaving, what it hands on
must be in ``seq`` order, and once every writer has ended it must have handed on every
committed row.

The model's snapshot is PostgreSQL's (``GetSnapshotData``): ``xmax`` is the latest
*completed* xid + 1, and ``xmin`` the smallest running xid below ``xmax`` (else ``xmax``):
a running transaction with a larger xid is in neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from outputs.log_reader import LogRow, Settler, Snapshot

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def row(seq: int, tx: int) -> LogRow:
    return LogRow(seq, tx, f"GE{seq}", "opened", T0, "g", ("c",), "red", "fire", b"{}")


@dataclass
class Database:
    next_xid: int = 100
    next_seq: int = 1
    latest_completed: int = 99
    running: dict[int, list[int]] = field(default_factory=dict)  # xid → seqs inserted
    committed: dict[int, int] = field(default_factory=dict)  # seq → xid

    def begin(self) -> int:
        xid = self.next_xid
        self.next_xid += 1
        self.running[xid] = []
        return xid

    def insert(self, xid: int) -> None:
        self.running[xid].append(self.next_seq)
        self.next_seq += 1

    def end(self, xid: int, commit: bool) -> None:
        seqs = self.running.pop(xid)
        self.latest_completed = max(self.latest_completed, xid)
        if commit:
            self.committed.update((s, xid) for s in seqs)

    def new_xid(self) -> int:
        """``SELECT pg_current_xact_id()`` in a transaction of its own."""
        xid = self.begin()
        self.end(xid, commit=True)
        return xid

    def snapshot(self) -> Snapshot:
        xmax = self.latest_completed + 1
        return Snapshot(min((x for x in self.running if x < xmax), default=xmax))

    def visible_after(self, after: int) -> list[LogRow]:
        return [row(s, x) for s, x in sorted(self.committed.items()) if s > after]


@dataclass
class Reader:
    """What ``LogReader.read`` does, on the model."""

    settler: Settler
    cursor: int = 0
    handed: list[int] = field(default_factory=list)

    def read(self, db: Database, limit: int | None = None) -> bool:
        ready, pending = self._read(db, limit)
        if self.settler.needs_horizon:
            self.settler.horizon = db.new_xid()
            if not ready:
                ready, pending = self._read(db, limit)
        for r in ready:
            assert r.seq > self.cursor, f"{r.seq} handed on after {self.cursor}"
            self.cursor = r.seq
            self.handed.append(r.seq)
        return pending

    def _read(self, db: Database, limit: int | None) -> tuple[list[LogRow], bool]:
        rows = db.visible_after(self.cursor)[:limit]
        return self.settler.settle(self.cursor, rows, db.snapshot())


# A writer: begins (takes its xid), inserts once or twice (takes seqs), then commits or rolls
# back, at random moments; the reader reads at other random moments.
WRITER = st.tuples(st.lists(st.integers(0, 40), min_size=3, max_size=4).map(sorted), st.booleans())
SCHEDULE = st.tuples(
    st.lists(WRITER, min_size=2, max_size=6), st.lists(st.integers(0, 41), min_size=5, max_size=30)
)


def run(
    schedule: tuple[list[tuple[list[int], bool]], list[int]], strict_xmin: bool, limit: int | None
) -> list[int]:
    writers, reads = schedule
    steps: list[tuple[int, int, str, int]] = []  # (time, order, what, writer)
    for k, (times, commit) in enumerate(writers):
        begin, *inserts, end = times
        steps.append((begin, 0, "begin", k))
        steps += [(t, 1, "insert", k) for t in inserts]
        steps.append((end, 2, "commit" if commit else "abort", k))
    steps += [(t, 3, "read", -1) for t in reads]
    db = Database()
    xids: dict[int, int] = {}
    reader = Reader(Settler(strict_xmin=strict_xmin))
    for _, _, what, k in sorted(steps):
        if what == "begin":
            xids[k] = db.begin()
        elif what == "insert":
            db.insert(xids[k])
        elif what == "read":
            reader.read(db, limit)
        else:
            db.end(xids[k], commit=what == "commit")
    for _ in range(len(db.committed) + 3):  # reads until the reader has caught up
        reader.read(db, limit)
    assert reader.handed == sorted(db.committed), (reader.handed, sorted(db.committed))
    return reader.handed


@settings(max_examples=500, deadline=None)
@given(SCHEDULE, st.booleans(), st.sampled_from([None, 1, 3]))
def test_changes_go_in_seq_order_and_none_is_skipped(
    schedule: tuple[list[tuple[list[int], bool]], list[int]], strict_xmin: bool, limit: int | None
) -> None:
    run(schedule, strict_xmin, limit)


def test_the_xmin_rule_alone_would_hand_on_seq_6_before_5() -> None:
    """The interleaving the module doc describes: B has the older xid, A the newer; A
    inserts seq 5 and stays open, B inserts seq 6 and commits. Seq 6 passes ``tx < xmin``;
    it must wait for A."""
    db = Database()
    b = db.begin()  # its first write happened earlier
    a = db.begin()
    db.insert(a)  # seq 1
    db.insert(b)  # seq 2
    db.end(b, commit=True)
    assert db.committed[2] < db.snapshot().xmin  # the xmin rule alone lets seq 2 through
    reader = Reader(Settler())
    assert reader.read(db) is True and reader.handed == []
    db.end(a, commit=True)
    reader.read(db)
    assert reader.handed == [1, 2]


def test_a_running_xid_above_the_snapshots_xmax_is_waited_for() -> None:
    """What the real database showed: B (older xid) commits, A (newer xid, running) holds
    the lower seq; A's xid is >= xmax, so xmin does not see it. The horizon must be a fresh
    xid, not xmax."""
    db = Database()
    b, a = db.begin(), db.begin()
    db.insert(a)
    db.insert(b)
    db.end(b, commit=True)
    snap = db.snapshot()
    assert a >= snap.xmin  # xmin == xmax == b + 1 == a: A is invisible to both
    reader = Reader(Settler())
    for _ in range(3):
        assert reader.read(db) is True and reader.handed == []
    db.end(a, commit=False)
    reader.read(db)
    assert reader.handed == [2]


def test_a_rolled_back_seq_is_skipped_once_its_writers_have_ended() -> None:
    db = Database()
    a, b = db.begin(), db.begin()
    db.insert(a)  # seq 1, will roll back
    db.insert(b)  # seq 2
    db.end(b, commit=True)
    reader = Reader(Settler())
    assert reader.read(db) is True and reader.handed == []  # 1 may still come
    db.end(a, commit=False)
    reader.read(db)
    assert reader.handed == [2]


def test_without_gaps_rows_go_at_once_and_strict_xmin_waits_for_older_writers() -> None:
    db = Database()
    old = db.begin()  # an older write transaction, e.g. a registry import, still open
    w = db.begin()
    db.insert(w)
    db.end(w, commit=True)
    strict, relaxed = Reader(Settler(strict_xmin=True)), Reader(Settler(strict_xmin=False))
    assert strict.read(db) is True and strict.handed == []
    assert relaxed.read(db) is False and relaxed.handed == [1]
    db.end(old, commit=True)
    strict.read(db)
    assert strict.handed == [1]
