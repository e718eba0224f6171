"""The host collector against this machine's real /proc, plus fixture trees and faked sensors."""

from __future__ import annotations

import os
import re
import time
from collections import namedtuple
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
import psutil
import pytest
from pydantic import ValidationError

from collectors.host import HostCollector, HostOptions, _cpu_ratios
from qwq_core.collector import CollectorContext, registry
from qwq_core.model import Event
from qwq_core.store import LocalStore

HOST = "test-host"
REQUIRED = {
    "host_cpu_usage_ratio",
    "host_cpu_count",
    "host_load1",
    "host_load5",
    "host_load15",
    "host_memory_used_bytes",
    "host_memory_total_bytes",
    "host_memory_available_bytes",
    "host_memory_cached_bytes",
    "host_memory_buffers_bytes",
    "host_swap_used_bytes",
    "host_swap_total_bytes",
    "host_filesystem_free_bytes",
    "host_filesystem_size_bytes",
    "host_filesystem_used_bytes",
    "host_filesystem_files",
    "host_filesystem_files_free",
    "host_disk_read_bytes_total",
    "host_disk_written_bytes_total",
    "host_disk_reads_completed_total",
    "host_disk_writes_completed_total",
    "host_disk_io_time_seconds_total",
    "host_network_receive_bytes_total",
    "host_network_transmit_bytes_total",
    "host_network_receive_packets_total",
    "host_network_transmit_packets_total",
    "host_network_errors_total",
    "host_network_drops_total",
    "host_processes",
    "host_open_fds",
    "host_open_fds_limit",
    "host_context_switches_total",
    "host_interrupts_total",
    "host_uptime_seconds",
    "host_boot_time_seconds",
}
OPTIONAL = {"host_temperature_celsius"}
MODES = set(psutil.cpu_times()._fields) - {"guest", "guest_nice"}


def make_collector(**options: object) -> HostCollector:
    events: list[Event] = []
    return HostCollector(HostOptions(**options), CollectorContext("host", HOST, events.append))


def collect(collector: HostCollector) -> pl.DataFrame:
    return collector.collect(datetime.now(UTC))


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two collects of one collector, 0.2 s apart (and 0.2 s after the priming reading)."""
    collector = make_collector()
    time.sleep(0.2)
    first = collect(collector)
    time.sleep(0.2)
    return first, collect(collector)


@pytest.fixture
def frame(frames: tuple[pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
    return frames[1]


def of(frame: pl.DataFrame, name: str, **labels: str | None) -> pl.DataFrame:
    """The rows of ``name`` whose labels equal ``labels`` (None: label absent)."""
    out = frame.filter(pl.col("name") == name)
    for label, value in labels.items():
        out = out.filter(pl.col(label).is_null() if value is None else pl.col(label) == value)
    return out


def value(frame: pl.DataFrame, name: str, **labels: str | None) -> float:
    rows = of(frame, name, **labels)
    assert rows.height == 1, f"expected one {name}{labels} sample, got {rows.height}"
    return rows["value"][0]


def labels_of(frame: pl.DataFrame) -> list[str]:
    return sorted(set(frame.columns) - {"name", "ts", "value"})


def test_emits_every_required_metric(frame: pl.DataFrame) -> None:
    names = set(frame["name"])
    assert REQUIRED <= names, f"missing: {sorted(REQUIRED - names)}"
    assert names <= REQUIRED | OPTIONAL, f"unexpected: {sorted(names - REQUIRED - OPTIONAL)}"


def test_every_sample_carries_the_host_label(frame: pl.DataFrame) -> None:
    assert frame["host"].to_list() == [HOST] * frame.height


def test_each_series_appears_once_per_collect(frame: pl.DataFrame) -> None:
    assert frame.select("name", *labels_of(frame)).is_duplicated().sum() == 0


def test_cpu_ratios_cover_total_and_each_core(frame: pl.DataFrame) -> None:
    cpus = set(of(frame, "host_cpu_usage_ratio")["cpu"])
    assert cpus == {"total", *(str(i) for i in range(psutil.cpu_count()))}
    assert value(frame, "host_cpu_count") == psutil.cpu_count()


@pytest.mark.parametrize("cpu", ["total", "0"])
def test_cpu_busy_and_mode_ratios_are_consistent(frame: pl.DataFrame, cpu: str) -> None:
    ratios = of(frame, "host_cpu_usage_ratio", cpu=cpu)
    assert ratios["value"].is_between(0, 1).all()
    busy = value(frame, "host_cpu_usage_ratio", cpu=cpu, mode=None)
    modes = {row["mode"]: row["value"] for row in ratios.drop_nulls("mode").iter_rows(named=True)}
    assert set(modes) == MODES
    assert sum(modes.values()) == pytest.approx(1.0)
    assert busy == pytest.approx(1 - modes["idle"] - modes.get("iowait", 0.0))


def test_cpu_ratios_are_clamped_and_skipped_without_elapsed_time() -> None:
    before = psutil.cpu_times()._replace(user=10.0, idle=100.0)
    after = before._replace(user=30.0, idle=90.0)  # idle going backwards: a known kernel quirk
    ratios = list(_cpu_ratios("total", before, after))
    assert ratios and all(0.0 <= ratio <= 1.0 for _, _, ratio in ratios)
    assert list(_cpu_ratios("total", before, before)) == []


def test_memory_is_consistent(frame: pl.DataFrame) -> None:
    total = value(frame, "host_memory_total_bytes")
    assert total == psutil.virtual_memory().total
    assert 0 < value(frame, "host_memory_used_bytes") <= total
    assert 0 < value(frame, "host_memory_available_bytes") <= total
    assert value(frame, "host_swap_used_bytes") <= value(frame, "host_swap_total_bytes")


def test_counters_do_not_decrease(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    first, second = (f.filter(pl.col("name").str.ends_with("_total")) for f in frames)
    keys = ["name", *labels_of(second)]
    joined = second.join(first, on=keys, how="inner", nulls_equal=True, suffix="_before")
    assert joined.height == second.height == first.height > 0
    decreased = joined.filter(pl.col("value") < pl.col("value_before"))
    assert decreased.is_empty(), decreased


def test_filesystems_include_root_and_leave_out_pseudo_mounts(frame: pl.DataFrame) -> None:
    sizes = of(frame, "host_filesystem_size_bytes")
    mountpoints = set(sizes["mountpoint"])
    assert "/" in mountpoints
    usage = psutil.disk_usage("/")  # free: what unprivileged users may use (reserved blocks excluded)
    root = sizes.filter(pl.col("mountpoint") == "/").row(0, named=True)
    assert root["device"] and root["fstype"] and root["value"] == usage.total
    assert not {m for m in mountpoints if re.match(r"^/(proc|sys|dev)($|/)", m)}
    assert not set(sizes["fstype"]) & {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "overlay"}
    assert value(frame, "host_filesystem_free_bytes", mountpoint="/") == pytest.approx(usage.free, rel=0.01)
    assert value(frame, "host_filesystem_used_bytes", mountpoint="/") == pytest.approx(usage.used, rel=0.01)
    inodes = os.statvfs("/")
    assert value(frame, "host_filesystem_files", mountpoint="/") == inodes.f_files
    assert value(frame, "host_filesystem_files_free", mountpoint="/") == pytest.approx(inodes.f_ffree, rel=0.01)


def test_disks_and_interfaces_follow_the_exclusions(frame: pl.DataFrame) -> None:
    options = HostOptions()
    disks = {d for d in psutil.disk_io_counters(perdisk=True) if not options.exclude_disks.search(d)}
    nics = {n for n in psutil.net_io_counters(pernic=True) if not options.exclude_interfaces.search(n)}
    assert set(of(frame, "host_disk_read_bytes_total")["device"]) == disks
    assert set(of(frame, "host_network_receive_bytes_total")["device"]) == nics
    assert set(of(frame, "host_network_errors_total")["direction"]) == {"receive", "transmit"}


@pytest.mark.parametrize(
    ("name", "field", "scale"),
    [
        ("host_disk_read_bytes_total", "read_bytes", 1),
        ("host_disk_written_bytes_total", "write_bytes", 1),
        ("host_disk_reads_completed_total", "read_count", 1),
        ("host_disk_writes_completed_total", "write_count", 1),
        ("host_disk_io_time_seconds_total", "busy_time", 1000),  # psutil: milliseconds
        ("host_network_receive_bytes_total", "bytes_recv", 1),
        ("host_network_transmit_bytes_total", "bytes_sent", 1),
        ("host_network_receive_packets_total", "packets_recv", 1),
        ("host_network_transmit_packets_total", "packets_sent", 1),
    ],
)
def test_device_counters_match_psutil(name: str, field: str, scale: int) -> None:
    read = (
        partial(psutil.disk_io_counters, perdisk=True)
        if "_disk_" in name
        else partial(psutil.net_io_counters, pernic=True)
    )
    before = read()
    samples = of(collect(make_collector()), name)
    after = read()
    assert samples.height > 0
    for device, collected in samples.select("device", "value").iter_rows():
        # Counters only grow: a wrong field or scale would fall outside the bracket.
        assert getattr(before[device], field) / scale <= collected <= getattr(after[device], field) / scale


def test_exclusion_options_are_honoured() -> None:
    if "lo" not in psutil.net_io_counters(pernic=True):
        pytest.skip("no loopback interface here")
    default = collect(make_collector())
    custom = collect(make_collector(exclude_interfaces="^veth", exclude_mountpoints="^$"))
    assert "lo" not in set(of(default, "host_network_receive_bytes_total")["device"])
    assert "lo" in set(of(custom, "host_network_receive_bytes_total")["device"])
    mounts = {
        name: set(of(frame, "host_filesystem_size_bytes")["mountpoint"])
        for name, frame in (("default", default), ("custom", custom))
    }
    added = mounts["custom"] - mounts["default"]  # e.g. /dev/shm: tmpfs, left out by mountpoint alone
    assert added and all(HostOptions().exclude_mountpoints.search(m) for m in added)
    assert not set(of(custom, "host_filesystem_size_bytes")["fstype"]) & {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
    }
    # /dev/shm is often mounted twice: one series per mountpoint all the same
    assert custom.select("name", *labels_of(custom)).is_duplicated().sum() == 0


def test_open_fds_come_from_the_real_procfs(frame: pl.DataFrame) -> None:
    assert 0 < value(frame, "host_open_fds") <= value(frame, "host_open_fds_limit")


def test_procfs_option_reads_a_fixture_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "PROCFS_PATH", psutil.PROCFS_PATH)  # restored after the test
    (tmp_path / "sys/fs").mkdir(parents=True)
    (tmp_path / "sys/fs/file-nr").write_text("1234\t0\t99999\n")
    frame = collect(make_collector(procfs=tmp_path))
    assert psutil.PROCFS_PATH == str(tmp_path)
    assert value(frame, "host_open_fds") == 1234
    assert value(frame, "host_open_fds_limit") == 99999
    assert not of(frame, "host_memory_total_bytes").height  # its /proc file is missing: section skipped


def test_default_procfs_leaves_psutil_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "PROCFS_PATH", "/proc")
    make_collector(procfs="/proc/")
    assert psutil.PROCFS_PATH == "/proc"


def test_a_failing_section_loses_only_itself_and_says_so_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, list[object]]:
        raise OSError("sensor bus gone")

    events: list[Event] = []
    collector = HostCollector(HostOptions(), CollectorContext("host", HOST, events.append))
    monkeypatch.setattr(psutil, "sensors_temperatures", broken, raising=False)
    names = set(collect(collector)["name"])
    collect(collector)
    assert REQUIRED - {"host_cpu_usage_ratio"} <= names
    assert "host_temperature_celsius" not in names
    assert [(e.kind, e.attrs["target"]) for e in events] == [("target.down", "temperatures section")]
    assert "sensor bus gone" in events[0].message

    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    collect(collector)
    assert [e.kind for e in events] == ["target.down", "target.up"]


def test_temperatures_are_labelled_by_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    reading = namedtuple("shwtemp", "label current high critical")
    sensors = {"coretemp": [reading("Core 0", 45.0, 80.0, 100.0), reading("", 47.5, None, None)]}
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: sensors, raising=False)
    frame = collect(make_collector())
    assert value(frame, "host_temperature_celsius", sensor="coretemp", label="Core 0") == 45.0
    assert value(frame, "host_temperature_celsius", sensor="coretemp", label="1") == 47.5


def test_an_unreadable_filesystem_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/":
            raise OSError(116, "Stale file handle")
        return real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    frame = collect(make_collector())
    assert "/" not in set(of(frame, "host_filesystem_size_bytes")["mountpoint"])
    assert "host_memory_total_bytes" in set(frame["name"])


def expected_unit(name: str) -> str:
    return next((unit for unit in ("bytes", "seconds", "ratio", "celsius") if f"_{unit}" in name), "")


def test_metrics_describe_every_emitted_name(frame: pl.DataFrame) -> None:
    infos = {info.name: info for info in make_collector().metrics()}
    assert set(infos) == REQUIRED | OPTIONAL
    assert set(frame["name"]) <= set(infos)
    for name, info in infos.items():
        assert info.type == ("counter" if name.endswith("_total") else "gauge"), name
        assert info.unit == expected_unit(name), name
        assert info.help, name
    assert infos["host_disk_io_time_seconds_total"].unit == "seconds"
    assert infos["host_cpu_usage_ratio"].unit == "ratio"


@pytest.mark.parametrize("key", ["exclude_mountpoints", "exclude_fstypes", "exclude_disks", "exclude_interfaces"])
def test_options_reject_an_invalid_regex(key: str) -> None:
    with pytest.raises(ValidationError, match=r"invalid regular expression '\[': unterminated"):
        HostOptions(**{key: "["})


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="extra"):
        HostOptions.model_validate({"exclude_disk": "^loop"})


def test_registered_as_the_host_collector_type() -> None:
    assert registry().get("host") is HostCollector
    assert HostCollector.default_interval.total_seconds() == 5


def test_samples_round_trip_through_the_store(frame: pl.DataFrame, store: LocalStore) -> None:
    store.write(frame)
    store.describe(make_collector().metrics())
    stored = store.query("host_cpu_usage_ratio", labels={"cpu": "total"})
    assert set(stored["mode"].to_list()) == MODES | {None}
    assert set(stored["host"]) == {HOST}
    busy = stored.filter(pl.col("mode").is_null())["value"][0]
    assert busy == value(frame, "host_cpu_usage_ratio", cpu="total", mode=None)
    types = dict(store.metrics().select("name", "type").iter_rows())
    assert types["host_network_receive_bytes_total"] == "counter"
    assert types["host_memory_used_bytes"] == "gauge"
