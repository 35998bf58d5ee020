"""A record dated where the store cannot keep it (before 1970-01-01, after 2099-12-31 UTC) is skipped and counted
as `time_out_of_range` by every reader, and the records around it are read (issue 19, point 11)."""

from __future__ import annotations

import pytest

from collector.config import CollectorSettings
from collector.observation import EARLIEST_US, LATEST_US, Observation, TimeOutOfRange, seconds_to_us
from collector.sources import open_source
from tests.collector.logs.test_filterlogs import ALLOWED, SQUIDGUARD
from tests.collector.logs.test_formats import COMMON, CUSTOM, E2G_CSV, E2G_TAB, EVE_TLS, NATIVE, SPEC
from tests.collector.packet.test_pcap import FRAME, pcap

_LEASE = "lease 10.20.10.5{n} {{\n  starts 2 {day} 07:00:00;\n  ends 2 {day} 08:00:00;\n" \
         "  hardware ethernet 3c:22:fb:30:00:0{n};\n  binding state active;\n}}\n"

# each format: a good record, then the same dated out of the store's range
RECORDS = {
    "squid": (NATIVE, NATIVE.replace(NATIVE.split()[0], "99999999999.000", 1)),  # year 5138
    "squid-common": (COMMON, COMMON.replace("2026", "9999")),
    "squid-logformat": (CUSTOM, CUSTOM.replace("1781600701", "99999999999")),
    "e2guardian-csv": (E2G_CSV, E2G_CSV.replace("2026.6.16", "9999.6.16")),
    "e2guardian-tab": (E2G_TAB, E2G_TAB.replace("2026.6.16", "9999.6.16")),
    "e2guardian": (ALLOWED, ALLOWED.replace("2026.11.28", "1899.12.31")),
    "squidguard": (SQUIDGUARD, SQUIDGUARD.replace("2026-11-28", "9999-11-28")),
    "suricata-eve": (EVE_TLS, EVE_TLS.replace("2026-06-16T08", "0001-01-01T08")),
    "dnsmasq-leases": ("1781600400 3c:22:fb:30:00:03 10.20.10.50 laptop *",
                       "99999999999999 3c:22:fb:30:00:04 10.20.10.51 tablet *"),
    "dhcpd-leases": (_LEASE.format(n=1, day="2026/06/16"), _LEASE.format(n=2, day="1899/12/31")),
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_record_out_of_range_is_counted_and_its_neighbours_read(tmp_path, name):
    good, late = RECORDS[name]
    path = tmp_path / "input.log"
    path.write_text(f"{good}\n{late}\n{good}\n")
    source = open_source(path, CollectorSettings(squid_logformat=SPEC if name == "squid-logformat" else None))
    out: list[Observation] = []
    source.run(out.append)
    assert source.skips.by_reason == {"time_out_of_range": 1}
    assert len(out) == 2 and all(EARLIEST_US <= obs.ts_us <= LATEST_US for obs in out)


@pytest.mark.parametrize("magic", [0xA1B2C3D4, 0xA1B23C4D])
def test_a_classic_pcap_past_2099_or_with_a_fraction_over_a_second(tmp_path, magic):
    """Its 32-bit seconds run to 2106-02-07 06:28:15, past what the store keeps; a fraction of a second of
    a million microseconds (a billion nanoseconds) or more is no stamp. The first and the last frames are
    good: 1970-01-01 00:00:00 and 2099-12-31 23:59:59 and the largest fraction there is."""
    top = 999_999 if magic == 0xA1B2C3D4 else 999_999_999
    path = tmp_path / "edge.pcap"
    path.write_bytes(pcap("<", magic, [(0, 0, FRAME), (4_102_444_800, 0, FRAME), (0xFFFFFFFF, 0, FRAME),
                                       (1_781_600_000, top + 1, FRAME), (4_102_444_799, top, FRAME)]))
    source = open_source(path)
    source.run(lambda obs: None)
    assert source.skips.by_reason == {"time_out_of_range": 3} and source.packets == 2


def test_the_bounds():
    assert seconds_to_us(0) == EARLIEST_US  # 1970-01-01 00:00:00 UTC
    assert seconds_to_us(4_102_444_799) == LATEST_US - 999_999  # 2099-12-31 23:59:59 UTC
    for seconds in (-0.000001, 4_102_444_800, -2_208_988_800, float("inf"), float("-inf"), float("nan"), 1e300):
        with pytest.raises(TimeOutOfRange):
            seconds_to_us(seconds)
    with pytest.raises(TimeOutOfRange):
        Observation(2**64, "dns", "pcap", "x#1")
