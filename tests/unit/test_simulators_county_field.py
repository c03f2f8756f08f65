"""The generated county's patrol tags and response resources: the district's proportions,
tags at existing sites with an interval by kind of place, a hydrant on every fire-water
sensor, and files the registry imports as they are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from detectors.patrol_schedule import Schedule
from devices.device_import import ParsedDevice, iter_devices
from devices.resources import ParsedResource, ResourceKind, iter_resources
from simulators.county import CountySpec, generate_county
from simulators.county_field import interval_for
from simulators.county_files import find_county_files, write_county
from simulators.patrol_rounds import rounds

SMALL = CountySpec(towns=3, villages_per_town=4, grids_per_village=5, cameras=2, seed=11)


def test_the_district_scale_gives_its_tags_and_stations() -> None:
    spec = CountySpec(towns=11, villages_per_town=11, grids_per_village=9, cameras=0)
    counts = generate_county(spec).counts()
    assert counts["patrol_tag"] == 4064
    assert counts["micro_fire_station"] == 76
    assert counts["duty_team"] == 11


def test_tags_mark_existing_sites_and_hydrants_sit_on_the_sensors() -> None:
    county = generate_county(SMALL)
    tags = [d for d in county.devices if d.type == "patrol_tag"]
    others = [d for d in county.devices if d.type != "patrol_tag"]
    assert county.devices[: len(others)] == tuple(others)  # tags come after every device
    sites = {d.site: d.grid_code for d in others}
    for tag in tags:
        assert sites[tag.site] == tag.grid_code
        assert tag.profile.options["patrol_interval"] == interval_for(tag.address)
    assert {t.profile.options["patrol_interval"] for t in tags} == {"P1D", "P7D"}
    sensors = {d.device_id for d in others if d.type == "water_pressure_sensor"}
    hydrants = [r for r in county.resources if r.kind is ResourceKind.FIRE_HYDRANT]
    assert {h.sensor_id for h in hydrants if h.sensor_id} == sensors
    assert any(h.sensor_id is None for h in hydrants)
    assert len({r.resource_id for r in county.resources}) == len(county.resources)
    assert Counter(r.kind for r in county.resources)[ResourceKind.DUTY_TEAM] == SMALL.towns


def test_the_same_seed_gives_the_same_tags_and_resources() -> None:
    a, b = generate_county(SMALL), generate_county(SMALL)
    assert a.devices == b.devices and a.resources == b.resources


def test_the_files_import_as_written(tmp_path: Path) -> None:
    county = generate_county(SMALL)
    write_county(county, tmp_path)
    files = find_county_files(tmp_path)
    assert files.resources is not None
    rows = list(iter_resources(files.resources))
    assert all(isinstance(r, ParsedResource) for r in rows), rows[:3]
    assert [r.resource.resource_id for r in rows if isinstance(r, ParsedResource)] == [
        r.resource_id for r in county.resources
    ]
    devices = [r for r in iter_devices(files.devices[0]) if isinstance(r, ParsedDevice)]
    tags = {d.device.device_id: d.device for d in devices if d.device.type == "patrol_tag"}
    assert len(tags) == sum(d.type == "patrol_tag" for d in county.devices)
    assert all(t.profile.options["patrol_interval"] in ("P1D", "P7D") for t in tags.values())


def test_patrol_rounds_scan_each_period_once_miss_a_few_and_find_some_hazards() -> None:
    county = generate_county(SMALL)
    tags = [d for d in county.devices if d.type == "patrol_tag"]
    workers = {g.code: g.members[0].id for g in county.grids if g.level.value == "grid"}
    start = 1_800_000_000.0
    done = rounds(tags, workers, start, start + 14 * 86400, seed=3, skip_share=0.1,
                  hazard_share=0.05)  # fmt: skip
    assert done == rounds(tags, workers, start, start + 14 * 86400, seed=3, skip_share=0.1,
                          hazard_share=0.05)  # fmt: skip
    assert [r.at for r in done] == sorted(r.at for r in done)
    assert all(start <= r.at < start + 14 * 86400 for r in done)
    assert all(r.worker_id == workers[r.tag_id.removeprefix("PT-")[:15]] for r in done)
    day = Schedule(86400.0)
    daily = {t.device_id for t in tags if t.profile.options["patrol_interval"] == "P1D"}
    periods = Counter((r.tag_id, day.period(r.at)) for r in done if r.tag_id in daily)
    assert set(periods.values()) == {1}  # a China-time day, once
    possible = len(daily) * (day.period(start + 14 * 86400) - day.period(start) + 1)
    assert 0.8 * possible < len(periods) < possible  # about one period in ten skipped
    hazards = [r for r in done if not all(r.checklist.values())]
    assert hazards and all(r.note for r in hazards)
    assert 0.02 < len(hazards) / len(done) < 0.09
    body = orjson.loads(hazards[0].payload())
    assert body["event"] == "checkin" and body["detail"]["worker_id"] == hazards[0].worker_id
