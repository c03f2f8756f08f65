"""The fleet runner with a fake clock and a recording publisher: limits, rate, clean stop;
and the ``simulate`` CLI's checks that need no broker."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from devices.messages import Kind
from devices.registry import Device
from gridwatch.cli import common, simulate_cmd
from simulators.fleet import FleetConfig, FleetModel, Outgoing
from simulators.fleet_runner import (
    ProgressLine,
    RunLimits,
    RunStats,
    StopReason,
    TokenBucket,
    render_stats,
    run_fleet,
)

START = 1_795_420_800.0
DEVICES = [Device(f"EF-{n}", "electrical_fire_monitor") for n in range(10)] + [
    Device(f"SD-{n}", "smoke_detector") for n in range(10)
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


class Recorder:
    def __init__(self, clock: FakeClock, fail_at: int | None = None) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes, int, bool, float]] = []
        self.flushed = 0
        self.fail_at = fail_at

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise KeyboardInterrupt
        self.sent.append((topic, payload, qos, retain, self.clock.now))

    def flush(self, timeout: float = 60.0) -> bool:
        self.flushed += 1
        return True


def model(speed: float = 1.0) -> FleetModel:
    return FleetModel(DEVICES, FleetConfig(start_ts=START, speed=speed, first_seq=1))


def expected(count: int, speed: float = 1.0) -> list[Outgoing]:
    out: list[Outgoing] = []
    for message in model(speed).messages_until(float("inf")):
        out.append(message)
        if len(out) == count:
            return out
    return out


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert [bucket.delay(0.0) for _ in range(4)] == [0.0, 0.0, pytest.approx(0.1),
                                                     pytest.approx(0.2)]
    assert bucket.delay(10.0) == 0.0  # refilled, but never beyond the burst
    assert bucket.delay(10.0) == 0.0
    assert bucket.delay(10.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_message_bound_publishes_what_the_model_makes_then_offline() -> None:
    clock = FakeClock()
    publisher = Recorder(clock)
    seen: list[RunStats] = []
    report = run_fleet(
        model(speed=60.0), publisher, qos=0, limits=RunLimits(messages=150),
        on_progress=seen.append, clock=clock, sleep=clock.sleep,
    )
    assert report.stopped is StopReason.MESSAGES
    assert report.stats.sent == 150 and report.offline_sent == len(DEVICES)
    want = expected(150, speed=60.0)
    got = publisher.sent
    assert [(t, p, r) for t, p, _, r, _ in got[:150]] == [(o.topic, o.payload, o.retain)
                                                          for o in want]
    assert all(qos == 0 for _, _, qos, _, _ in got)
    offline = got[150:]
    assert {t for t, *_ in offline} == {f"gridwatch/v1/up/{d.device_id}/status" for d in DEVICES}
    assert all(orjson.loads(p)["status"] == "offline" and r for _, p, _, r, _ in offline)
    assert publisher.flushed == 1
    assert seen and seen[-1] == report.stats
    assert report.stats.by_kind[Kind.STATUS] == len(DEVICES)
    # Messages go out when due (wall = sim / speed), never before.
    for (_, _, _, _, at), out in zip(got, want, strict=False):
        assert at - 1000.0 >= out.t / 60.0 - 1e-9


def test_rate_limit_spreads_messages() -> None:
    clock = FakeClock()
    publisher = Recorder(clock)
    report = run_fleet(
        model(speed=1000.0), publisher, limits=RunLimits(messages=200, rate=50),
        offline_on_stop=False, clock=clock, sleep=clock.sleep,
    )
    assert report.stats.sent == 200 and report.offline_sent == 0
    times = [at for *_, at in publisher.sent]
    assert times[-1] - times[0] >= (200 - 5) / 50 - 1e-6
    window = [t for t in times if t < times[0] + 1.0]
    assert len(window) <= 50 + 5


def test_duration_sends_everything_due_in_it_then_stops() -> None:
    clock = FakeClock()
    publisher = Recorder(clock)
    report = run_fleet(
        model(speed=10.0), publisher, limits=RunLimits(duration=30.0), offline_on_stop=False,
        clock=clock, sleep=clock.sleep,
    )
    assert report.stopped is StopReason.DURATION
    due = list(model(speed=10.0).messages_until(300.0))
    assert [(topic, payload) for topic, payload, *_ in publisher.sent] == [
        (o.topic, o.payload) for o in due
    ]
    assert due[-1].t / 10.0 <= clock.now - 1000.0 <= 30.0


def test_a_run_that_cannot_keep_up_lags_but_sends_all_that_is_due() -> None:
    clock = FakeClock()
    publisher = Recorder(clock)
    seen: list[RunStats] = []
    report = run_fleet(
        model(speed=60.0), publisher, limits=RunLimits(duration=5.0, rate=5),
        offline_on_stop=True, on_progress=seen.append, clock=clock, sleep=clock.sleep,
    )
    due = list(model(speed=60.0).messages_until(300.0))
    assert report.stopped is StopReason.DURATION and report.stats.sent == len(due)
    assert len(due) > 5 * 5 * 2  # far more than the rate allows in the duration
    assert clock.now - 1000.0 >= len(due) / 5 - 1  # so it took longer
    assert max(s.lag for s in seen) > 1.0  # and said it was behind
    offline = [orjson.loads(p) for t, p, *_ in publisher.sent[len(due):]]
    assert {o["ts"] for o in offline} == {round((START + 300.0 / 60.0) * 1000)}  # the end


def test_ctrl_c_still_says_offline() -> None:
    clock = FakeClock()
    publisher = Recorder(clock, fail_at=25)
    report = run_fleet(model(), publisher, clock=clock, sleep=clock.sleep)
    assert report.stopped is StopReason.INTERRUPTED
    assert report.stats.sent == 25 and report.offline_sent == len(DEVICES)
    assert publisher.flushed == 1


def test_cli_county_writes_importable_files(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "county"
    args = ["county", "--out", str(out), "--towns", "2", "--villages", "2", "--grids", "3",
            "--format", "csv", "--format", "jsonl"]
    result = runner.invoke(simulate_cmd.app, args)
    assert result.exit_code == 0, result.output
    assert (out / "grids.geojson").is_file() and (out / "devices.jsonl").is_file()
    assert "grids" in result.output and "smoke_detector" in result.output
    again = runner.invoke(simulate_cmd.app, args)
    assert isinstance(again.exception, common.UserError) and "--force" in str(again.exception)
    bad = runner.invoke(simulate_cmd.app, ["county", "--out", str(tmp_path / "x"), "--code", "12"])
    assert isinstance(bad.exception, common.UserError) and "6 digits" in str(bad.exception)


def test_cli_fleet_rejects_a_bad_scenario_before_connecting(tmp_path: Path) -> None:
    runner = CliRunner()
    county = tmp_path / "county"
    result = runner.invoke(simulate_cmd.app, ["county", "--out", str(county), "--towns", "1",
                                              "--villages", "1", "--grids", "2"])
    assert result.exit_code == 0, result.output
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[[steps]]\nat = 1\ndevice = "SD-nope"\nevent = "alarm"\n')
    result = runner.invoke(simulate_cmd.app, [
        "fleet", "--county-dir", str(county), "--scenario", str(scenario),
        "--url", "mqtt://127.0.0.1:9", "--topic-root", "t/v1",
    ])
    assert isinstance(result.exception, common.UserError)
    assert "step 1 (line 1)" in str(result.exception) and "SD-nope" in str(result.exception)
    result = runner.invoke(simulate_cmd.app, [
        "fleet", "--county-dir", str(county), "--interval", "smoke_detector=5",
        "--url", "mqtt://127.0.0.1:9", "--topic-root", "t/v1",
    ])
    assert isinstance(result.exception, common.UserError)
    assert "TYPE.KIND=SECONDS" in str(result.exception)
    result = runner.invoke(simulate_cmd.app, ["fleet"])
    assert isinstance(result.exception, common.UserError)


def test_only_devices_that_said_online_say_offline() -> None:
    clock = FakeClock()
    publisher = Recorder(clock)
    report = run_fleet(model(), publisher, limits=RunLimits(messages=5), clock=clock,
                       sleep=clock.sleep)
    online = [t for t, *_ in publisher.sent[:5]]
    offline = [t for t, *_ in publisher.sent[5:]]
    assert report.offline_sent == 5 and offline == online


def test_the_progress_line_says_where_the_run_stands() -> None:
    clock = FakeClock()
    console = Console(file=io.StringIO(), width=400, force_terminal=False)
    with ProgressLine(console, devices=len(DEVICES)) as line:
        run_fleet(model(speed=60.0), Recorder(clock), limits=RunLimits(messages=150),
                  on_progress=line, clock=clock, sleep=clock.sleep)
    text = render_stats(
        RunStats(1234, {Kind.TELEMETRY: 1000, Kind.STATUS: 234}, 7, 2.0, 3725.0, 617.0, 6.5, 3, 1),
        devices=20,
    ).plain
    assert text == (
        "1,234 sent  617 msg/s  20 devices  telemetry 1,000  heartbeat 0  event 0  status 234"
        "  scenario 7  sim +1:02:05  replayed 3  lost 1  lag 6.5 s"
    )
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "150 sent" in output and "20 devices" in output
