"""The device types of the contract, with ranges from the field (see docs/domain)."""

from __future__ import annotations

from devices.profiles import DeviceProfile, MetricSpec, common_metrics, metrics, register

register(
    DeviceProfile(
        type_key="smoke_detector",
        description="Independent wireless smoke detector (NB-IoT / LoRa / 4G)",
        metrics=metrics(
            MetricSpec("smoke_obscuration_db_m", "dB/m", 0.0, 10.0),
            MetricSpec("temperature_c", "°C", -40.0, 125.0),
            *common_metrics(),
        ),
        heartbeat_interval_s=4 * 3600.0,
    )
)

register(
    DeviceProfile(
        type_key="electrical_fire_monitor",
        description="Electrical-fire monitor: residual current and cable temperature (GB 14287)",
        metrics=metrics(
            MetricSpec("residual_current_ma", "mA", 0.0, 5000.0),
            *(MetricSpec(f"cable_temp_c_{i}", "°C", -40.0, 200.0) for i in range(1, 5)),
            *(MetricSpec(f"current_a_{p}", "A", 0.0, 2000.0) for p in "abc"),
            *(MetricSpec(f"voltage_v_{p}", "V", 0.0, 500.0) for p in "abc"),
            MetricSpec("temperature_c", "°C", -40.0, 125.0),
            *common_metrics(),
        ),
        heartbeat_interval_s=300.0,
    )
)

register(
    DeviceProfile(
        type_key="water_pressure_sensor",
        description="Fire-water pressure / level sensor (hydrant network, sprinkler, tank)",
        metrics=metrics(
            MetricSpec("pressure_mpa", "MPa", 0.0, 1.6),
            MetricSpec("water_level_m", "m", 0.0, 50.0),
            MetricSpec("temperature_c", "°C", -40.0, 125.0),
            *common_metrics(),
        ),
        heartbeat_interval_s=900.0,
    )
)

register(
    DeviceProfile(
        type_key="camera",
        description="Public-security IP camera (雪亮工程) pulled over RTSP",
        metrics=metrics(),
        heartbeat_interval_s=60.0,
    )
)

register(
    DeviceProfile(
        type_key="patrol_tag",
        description="Fire-patrol tag (消防智能巡查标签) a grid worker scans on the round; its "
        "registry row says how often: profile.patrol_interval ('P1D', 'P7D')",
        metrics=metrics(*common_metrics()),  # a tag reader's battery and signal, if any
        heartbeat_interval_s=7 * 86400.0,  # a passive tag sends nothing: no liveness
        events=frozenset({"checkin", "tamper", "low_battery", "fault"}),
        required_options=frozenset({"patrol_interval"}),
    )
)
