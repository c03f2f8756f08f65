"""``gridwatch report``: a node's figures over a period and its safety index (平安指数)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

import orjson
import psycopg
import typer
from rich.console import Console
from rich.table import Table

from alerts.deadlines import DeadlinePolicy
from alerts.figures import CHINA_TZ, Figures, Tally, UnknownNode, figures, top_nodes
from alerts.patrol_figures import PatrolFigures, PatrolTally, patrol_figures
from alerts.safety_index import (
    DEFAULT_WEIGHTS,
    DailyScore,
    NodeIndex,
    SafetyIndexWeights,
    index_now,
    series,
)
from gridwatch.cli import common
from gridwatch.endpoints import command_database

console = Console()

BLOCKS = "▁▂▃▄▅▆▇█"
MISSING = "·"

LABELS = {
    "open_red": "open red (I)",
    "open_orange": "open orange (II)",
    "open_yellow": "open yellow (III)",
    "open_blue": "open blue (IV)",
    "device_online_rate": "device online rate",
    "on_time_close_rate": "on-time close rate",
    "camera_health": "camera health",
}


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``gridwatch report`` shows."""

    figures: Figures
    index: NodeIndex
    days: tuple[date, ...]  # the days of the series, oldest first
    series: tuple[DailyScore, ...]
    patrols: PatrolFigures | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "figures": self.figures.to_json(),
            "safety_index": {
                **self.index.to_json(),
                "series": [{"day": p.day.isoformat(), "score": p.score} for p in self.series],
            },
        }
        if self.patrols is not None:
            out["patrols"] = self.patrols.to_json()
        return out


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (``2026-11-01``: its start, or its end with ``end_of_day``) or an ISO 8601
    time; without an offset, China time."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise common.UserError(
            f"{text!r} is neither a date (2026-11-01) nor a time (2026-11-01T08:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA_TZ)


def period(
    since: str | None, until: str | None, days: int, now: datetime
) -> tuple[datetime, datetime]:
    """The report's ``[since, until)`` from the options."""
    end = parse_moment(until, end_of_day=True) if until else now
    start = parse_moment(since) if since else end - timedelta(days=days)
    if end <= start:
        raise common.UserError(f"--until ({end.isoformat()}) must be after --since")
    return start, end


def series_days(start: datetime, end: datetime) -> tuple[date, ...]:
    """The days (China time) the period touches, oldest first."""
    first = start.astimezone(CHINA_TZ).date()
    last = (end - timedelta(microseconds=1)).astimezone(CHINA_TZ).date()
    return tuple(first + timedelta(days=i) for i in range((last - first).days + 1))


def sparkline(values: Sequence[float | None]) -> str:
    """One block per value on the fixed 0–100 scale (so lines compare), ``·`` for a gap."""
    top = len(BLOCKS) - 1
    return "".join(
        MISSING if v is None else BLOCKS[round(min(100.0, max(0.0, v)) / 100 * top)] for v in values
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return str(timedelta(seconds=round(seconds)))


def _local(moment: datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def _figures_table(f: Figures) -> Table:
    table = Table("figure", "value", title="Figures", title_justify="left")
    table.add_row("received (受理)", str(f.received))
    table.add_row("closed (办结)", str(f.closed))
    table.add_row("close rate (办结率)", _pct(f.close_rate))
    table.add_row(
        "on-time close rate (按期结案率)",
        f"{_pct(f.on_time_close_rate)}  ({f.closed_on_time} of {f.on_time_base} due)",
    )
    table.add_row(
        "rework rate (返工率)", f"{_pct(f.rework_rate)}  ({f.reworked} of {f.closed} closed)"
    )
    table.add_row("extension rate (延期率)", f"{_pct(f.extension_rate)}  (no extension action yet)")
    table.add_row("mean time to dispatch", _duration(f.mean_time_to_dispatch_s))
    table.add_row("mean time to close", _duration(f.mean_time_to_close_s))
    by_colour = ", ".join(f"{k} {v}" for k, v in f.open_by_severity.items())
    table.add_row("open now", f"{f.open_now}  ({by_colour})")
    return table


def _children_table(f: Figures) -> Table:
    columns = ("code", "name", "received", "closed", "close rate", "on-time rate")
    table = Table(*columns, title=f"By {f.children[0].node.level}", title_justify="left")
    for c in f.children:
        table.add_row(c.node.code, c.node.name, *_tally_cells(c))
    return table


def _tally_cells(t: Tally) -> tuple[str, ...]:
    return (str(t.received), str(t.closed), _pct(t.close_rate), _pct(t.on_time_close_rate))


def _index_table(index: NodeIndex) -> Table:
    table = Table("indicator", "value", "points", title="Safety index now", title_justify="left")
    for c in index.result.contributions:
        if c.value is None:
            value = "no data"
        elif c.indicator.startswith("open_"):
            value = str(int(c.value))
        else:
            value = _pct(c.value)
        points = f"{c.points:+.1f}" if c.points else "0"
        table.add_row(LABELS.get(c.indicator, c.indicator), value, points)
    return table


def _patrols_table(p: PatrolFigures) -> Table:
    """Per basic grid and per worker: due, done, on time, overdue, on-time rate."""
    table = Table(
        "grid / worker", "name", "tags", "due", "done", "on time", "overdue", "on-time rate",
        title="Patrols (巡查)", title_justify="left",
    )  # fmt: skip
    total = p.total
    table.add_row(
        p.node.code, p.node.name, str(total.tags), *_patrol_cells(total), style="bold"
    )
    for code, g in sorted(p.by_grid.items()):
        table.add_row(code, g.name, str(g.tags), *_patrol_cells(g))
    for worker, w in sorted(p.by_worker.items()):
        table.add_row(f"  {worker}", w.name, "", *_patrol_cells(w))
    return table


def _patrol_cells(t: PatrolTally) -> tuple[str, ...]:
    return (str(t.due), str(t.done), str(t.on_time), str(t.overdue), _pct(t.on_time_rate))


def show(report: Report) -> None:
    """The report as tables on the console."""
    f = report.figures
    console.print(
        f"[bold]{f.node.name}[/bold] ({f.node.code}, {f.node.level})  "
        f"{_local(f.since)} → {_local(f.until)} CST",
        highlight=False,
    )
    console.print(_figures_table(f))
    if f.by_category:
        table = Table("category", "received", title="By category", title_justify="left")
        for category, n in f.by_category.items():
            table.add_row(category, str(n))
        console.print(table)
    if f.children:
        console.print(_children_table(f))
    limits = ", ".join(f"{k} {v}" for k, v in f.time_limits.items())
    console.print(f"on time = closed within the event's time limit ({limits})", style="dim")
    for note in f.notes:
        console.print(note, style="dim")
    if report.patrols is not None and report.patrols.total.tags:
        console.print(_patrols_table(report.patrols))
        console.print(
            "due = periods whose deadline (end + grace) fell in the period; on time = done by "
            "a check-in within it; done = every check-in",
            style="dim",
        )

    console.print(f"\n[bold]平安指数 {report.index.score:.1f}[/bold] / 100", highlight=False)
    console.print(_index_table(report.index))
    scores = {p.day: p.score for p in report.series}
    line = sparkline([scores.get(d) for d in report.days])
    kept = list(scores.values())
    summary = f"min {min(kept):.1f}, max {max(kept):.1f}" if kept else "none computed yet"
    console.print(
        f"daily {report.days[0]} → {report.days[-1]}: {line}  ({summary}; {MISSING} = no score)",
        highlight=False,
    )


async def build(
    conn: psycopg.AsyncConnection[Any],
    node: str | None,
    since: datetime,
    until: datetime,
    now: datetime | None = None,
    *,
    policy: DeadlinePolicy | None = None,
    weights: SafetyIndexWeights | None = None,
) -> Report:
    """The report of ``node`` (default: the top of the grid tree)."""
    if node is None:
        roots = await top_nodes(conn)
        if len(roots) != 1:
            found = ", ".join(r.code for r in roots) or "none"
            raise common.UserError(f"name a grid with --node (top-level grids: {found})")
        node = roots[0].code
    days = series_days(since, until)
    try:
        result = await figures(conn, node=node, since=since, until=until, now=now, policy=policy)
        index = await index_now(conn, node, weights or DEFAULT_WEIGHTS, policy=policy, now=now)
    except UnknownNode as exc:
        raise common.UserError(str(exc)) from None
    points = await series(conn, node, len(days), until=days[-1])
    patrols = await patrol_figures(conn, node=node, since=since, until=until, now=now)
    return Report(result, index, days, tuple(points), patrols)


def report(
    node: Annotated[
        str | None,
        typer.Option(
            help="Grid code of a county, town, village or basic grid (default: the top grid)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Start: a date (2026-11-01) or a time, China time unless it says."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="End: a date counts to the end of that day (default: now)."),
    ] = None,
    days: Annotated[
        int, typer.Option(min=1, help="Period length in days when --since is not given.")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for integrators.")] = False,
) -> None:
    """Figures of a grid node over a period (received, closed, 办结率, 按期结案率, 返工率, …),
    its children's, and its safety index (平安指数) now and per day."""
    start, end = period(since, until, days, datetime.now(CHINA_TZ))
    settings = common.settings()

    async def main() -> Report:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                return await build(
                    conn, node, start, end,
                    policy=settings.alerts.workflow.deadlines, weights=settings.alerts.safety_index,
                )  # fmt: skip

    result = common.run_async(main)
    if as_json:
        typer.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        show(result)
