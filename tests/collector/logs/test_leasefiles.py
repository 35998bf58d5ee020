"""DHCP servers' lease files (ISC dhcpd, dnsmasq) as identity evidence."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.logs.leasefiles import LeaseFileSource, dnsmasq_lease, looks_like_dnsmasq, starts_dhcpd_record
from collector.sources import open_source
from tests.conftest import SCHOOL_DAY, run_cli

# Written in dhcpd.leases(5)'s format: times are UTC, "W YYYY/MM/DD HH:MM:SS".
DHCPD = """# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;

lease 10.20.10.50 {
  starts 2 2026/06/16 07:00:00;
  ends 2 2026/06/16 08:00:00;
  cltt 2 2026/06/16 07:00:00;
  binding state active;
  next binding state free;
  hardware ethernet 00:1B:21:AA:00:02;
  uid "\\001\\000\\033!\\252\\000\\002";
  client-hostname "sokafor-laptop";
}
lease 10.20.10.51 {
  starts 2 2026/06/16 07:05:00;
  ends 2 2026/06/16 07:06:00;
  binding state free;
  hardware ethernet 3c:22:fb:30:00:09;
}
lease 10.20.10.52 {
  starts 2 2026/06/16 07:10:00;
  ends 2 2026/06/16 08:10:00;
  binding state active;
  hardware ethernet not-a-mac;
}
"""


def test_isc_held_leases_only(tmp_path):
    path = tmp_path / "dhcpd.leases"
    path.write_text(DHCPD.split("lease 10.20.10.52")[0])
    out: list = []
    LeaseFileSource(path, "dhcpd").run(out.append)
    (obs,) = out
    assert (obs.assigned_ip, obs.src_mac, obs.hostname, obs.lease_s, obs.dhcp_type, obs.source) == (
        "10.20.10.50", "00:1b:21:aa:00:02", "sokafor-laptop", 3600, "ACK", "dhcpd")
    assert obs.ts == dt.datetime(2026, 6, 16, 7, 0, tzinfo=dt.UTC)


def test_isc_file_counts_a_bad_lease(tmp_path):
    path = tmp_path / "dhcpd.leases"
    path.write_text(DHCPD)
    source = open_source(path)
    assert isinstance(source, LeaseFileSource) and source.kind == "dhcpd"
    out: list = []
    source.run(out.append)
    assert [o.assigned_ip for o in out] == ["10.20.10.50"]
    assert source.skips.by_reason == {"bad_lease": 1}


def test_dnsmasq_line():
    obs = dnsmasq_lease("1781600400 3c:22:fb:30:00:03 10.20.10.50 Ruths-iPhone 01:3c:22:fb:30:00:03", "l:1")
    assert (obs.assigned_ip, obs.src_mac, obs.hostname, obs.lease_s) == ("10.20.10.50", "3c:22:fb:30:00:03",
                                                                         "Ruths-iPhone", 3600)
    assert obs.ts == dt.datetime.fromtimestamp(1781600400 - 3600, dt.UTC)
    with pytest.raises(ValueError):
        dnsmasq_lease("soon 3c:22:fb:30:00:03 10.0.0.1 x *", "l:2")


def test_detection():
    assert [line for line in DHCPD.splitlines() if starts_dhcpd_record(line)] == [
        "authoring-byte-order little-endian;", "lease 10.20.10.50 {", "lease 10.20.10.51 {", "lease 10.20.10.52 {"]
    assert looks_like_dnsmasq("1781600400 3c:22:fb:30:00:03 10.20.10.50 * *")
    squid = "1157689312.049 5006 10.105.21.199 TCP_MISS/200 19763 CONNECT a:443 u DIRECT/1 -"
    assert not looks_like_dnsmasq(squid) and not starts_dhcpd_record(squid)


def test_a_lease_file_names_the_device_behind_proxy_lines(tmp_path):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("1781600400 3c:22:fb:30:00:03 10.20.10.50 Ruths-iPhone *\n")  # expires 09:00 UTC
    log = tmp_path / "access.log"
    log.write_text("1781598600.000 10 10.20.10.50 TCP_TUNNEL/200 500 CONNECT www.facebook.com:443 - "
                   "HIER_DIRECT/192.0.2.1 -\n")  # 08:30 UTC = 09:30 BST: inside the lease, restricted hours
    store = tmp_path / "store"
    proc = run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", leases, log, store=store, check=True)
    assert "1 breach," in proc.stdout
    rows = run_cli("breaches", "--config", SCHOOL_DAY / "ictwatch.yaml", "--json", store=store, check=True).stdout
    assert '"device": "PH-RBAKER"' in rows and '"user": "rbaker"' in rows


def test_following_a_dhcpd_file_line_by_line():
    """Followed as dhcpd writes it: a record is handed out when its closing brace arrives, a free one is
    not, a bad one is refused, and the same lease read again (dhcpd rewrites its file) is not repeated."""
    from collector.logs.leasefiles import lease_follower

    parse = lease_follower("dhcpd")
    handed: list = []
    refused = 0
    for number, line in enumerate(DHCPD.splitlines() * 2, 1):  # the whole file, then again as if rewritten
        try:
            handed += parse(line, f"dhcpd.leases@0:{number}")
        except ValueError:
            refused += 1
    assert [(o.assigned_ip, o.src_mac) for o in handed] == [("10.20.10.50", "00:1b:21:aa:00:02")]
    assert refused == 2  # the record with a bad MAC, each time it was read


def test_following_a_dnsmasq_file_that_is_rewritten():
    from collector.logs.leasefiles import lease_follower

    parse = lease_follower("dnsmasq")
    first = "1781600000 3c:22:fb:30:00:01 10.20.1.31 sokafor-phone 01:3c:22:fb:30:00:01"
    second = "1781603600 f0:99:bf:10:00:01 10.20.10.150 iPad *"
    assert len(parse(first, "l@0:1")) == 1
    assert parse(first, "l@1:1") == [] and len(parse(second, "l@1:2")) == 1  # rewritten with one more lease
