from datetime import date

from storage.timeseries import (
    expired,
    partition_name,
    timescale_policy_statements,
    timescale_statements,
    wanted_partitions,
)


def test_partitions_cover_retention_and_days_ahead() -> None:
    days = wanted_partitions(date(2026, 11, 23), retention_days=3, ahead_days=2)
    assert days[0] == date(2026, 11, 20) and days[-1] == date(2026, 11, 25)
    assert len(days) == len(set(days)) == 6


def test_expired_partitions_are_those_before_the_horizon() -> None:
    names = [partition_name(date(2026, 11, d)) for d in range(15, 25)]
    gone = expired([*names, "readings_default_other"], date(2026, 11, 23), retention_days=3)
    assert gone == [partition_name(date(2026, 11, d)) for d in range(15, 20)]


def test_timescale_path_builds_hypertable_compression_and_retention() -> None:
    ddl = " ".join(s.as_string(None) for s in timescale_statements())
    assert "create_hypertable('readings', 'ts'" in ddl
    assert "timescaledb.compress_segmentby = 'device_id, metric'" in ddl
    policies = " ".join(s.as_string(None) for s in timescale_policy_statements(90, 7))
    assert "add_compression_policy('readings', '7 days'::interval" in policies
    assert "add_retention_policy('readings', '90 days'::interval" in policies
