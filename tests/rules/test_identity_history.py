"""Identity as it was: one address moves from a teacher's laptop to a personal phone during the day, and
the phone's MAC roams from a classroom subnet to the staff room; every activity names the device, person
and place of its moment, and a report made after the leases expired still shows them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from collector.observation import Observation, to_table
from ictwatch import settings
from tests.conftest import SCHOOL_DAY, run_cli

LONDON = ZoneInfo("Europe/London")
DAY = dt.date(2026, 6, 16)
LAPTOP_MAC, PHONE_MAC = "00:1b:21:aa:00:02", "3c:22:fb:30:00:03"  # LT-SOKAFOR, PH-RBAKER in devices.yaml
SHARED_IP, STAFF_ROOM_IP = "10.20.10.50", "10.20.1.40"


def at(clock: str) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time.fromisoformat(clock), LONDON)


def us(clock: str) -> int:
    return int(at(clock).timestamp() * 1_000_000)


def ack(clock: str, mac: str, ip: str, lease_s: int) -> Observation:
    return Observation(us(clock), "dhcp", "pcap", f"day.pcap#{clock}", "10.20.0.1", 67, ip, 68, "udp", mac,
                       dhcp_type="ACK", assigned_ip=ip, lease_s=lease_s)


def proxy(clock: str, ip: str, host: str = "www.bbc.co.uk") -> Observation:
    return Observation(us(clock), "proxy", "squid", f"access.log:{clock}", ip, None, None, 443, "tcp", host=host,
                       method="CONNECT", url=f"{host}:443")


EVENTS = [
    ack("08:00", LAPTOP_MAC, SHARED_IP, 3600),
    proxy("08:30", SHARED_IP),  # the laptop's
    ack("09:10", PHONE_MAC, SHARED_IP, 3600),  # the laptop left; the address goes to a phone
    proxy("09:40", SHARED_IP, "www.facebook.com"),  # the phone's, in the classroom block
    ack("11:00", PHONE_MAC, STAFF_ROOM_IP, 1800),  # the phone roams to the staff room
    proxy("11:10", STAFF_ROOM_IP),
    proxy("11:15", SHARED_IP),  # the phone's lease of this address ended at 10:10: unknown
    proxy("12:00", STAFF_ROOM_IP),  # the staff-room lease ended at 11:30: unknown
]


def write_inputs(tmp_path):
    """The day's DHCP ACKs as a capture, and its requests as a Squid log with no user names."""
    pcap = tmp_path / "dhcp.pcap"
    writer = PcapWriter(str(pcap), linktype=1)
    for e in EVENTS:
        if e.kind == "dhcp":
            frame = Ether(src="00:00:5e:00:01:01", dst=e.src_mac) / IP(src="10.20.0.1", dst=e.assigned_ip) / UDP(
                sport=67, dport=68) / BOOTP(op=2, xid=1, yiaddr=e.assigned_ip,
                                            chaddr=bytes.fromhex(e.src_mac.replace(":", "")) + bytes(10)) / DHCP(
                options=[("message-type", "ack"), ("lease_time", e.lease_s), "end"])
            frame.time = e.ts_us / 1e6
            writer.write(frame)
    writer.close()
    log = tmp_path / "access.log"
    log.write_text("".join(
        f"{e.ts_us / 1e6:.3f} 10 {e.src_ip} TCP_TUNNEL/200 500 CONNECT {e.host}:443 - HIER_DIRECT/192.0.2.1 -\n"
        for e in EVENTS if e.kind == "proxy"))
    return pcap, log


def test_every_activity_names_the_device_of_its_moment():
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    df = engine.evaluate(to_table(EVENTS))
    got = [(r["source_ref"], r["device"], r["user"], r["location"], r["identity_source"])
           for r in df.iter_rows(named=True) if r["kind"] == "proxy"]
    assert got == [
        ("access.log:08:30", "LT-SOKAFOR", "sokafor", "Classroom block", "dhcp_lease"),
        ("access.log:09:40", "PH-RBAKER", "rbaker", "Classroom block", "dhcp_lease"),
        ("access.log:11:10", "PH-RBAKER", "rbaker", "Staff room", "dhcp_lease"),
        ("access.log:11:15", None, None, "Classroom block", None),
        ("access.log:12:00", None, None, "Staff room", None),
    ]
    facebook = df.filter(df.get_column("host") == "www.facebook.com").row(0, named=True)
    assert facebook["rule_ids"] == ["personal-use-restricted-hours"]  # rbaker's phone, in a classroom


def test_leases_learnt_in_one_batch_serve_the_next():
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    engine.evaluate(to_table(EVENTS[:1]))
    (row,) = engine.evaluate(to_table([proxy("08:45", SHARED_IP)])).iter_rows(named=True)
    assert (row["device"], row["user"]) == ("LT-SOKAFOR", "sokafor")


def test_report_made_after_the_leases_expired(tmp_path):
    """End to end: DHCP in a capture, requests in a Squid log, replayed; the report, made when none of
    the leases is current any more, shows each request's device and place as they were."""
    pcap, log = write_inputs(tmp_path)
    store = tmp_path / "store"
    run_cli("replay", "--config", SCHOOL_DAY / "ictwatch.yaml", pcap, log, store=store, check=True)
    out = tmp_path / "rbaker.html"
    run_cli("report", "--config", SCHOOL_DAY / "ictwatch.yaml", "--user", "rbaker", "--from", "2026-06-16", "--to",
            "2026-06-16", "--requested-by", "jcarter", "--reason", "review", "-o", out, store=store, check=True)
    html = out.read_text()
    assert html.count("PH-RBAKER") >= 2 and "Staff room" in html and "Classroom block" in html
    assert "www.facebook.com" in html and "LT-SOKAFOR" not in html


def test_long_ended_leases_are_forgotten():
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    old = ack("08:00", LAPTOP_MAC, SHARED_IP, 3600)
    old.ts_us -= 10 * 86_400_000_000  # ten days earlier
    engine.evaluate(to_table([old, ack("08:00", PHONE_MAC, STAFF_ROOM_IP, 3600)]))
    assert engine._identity.leases.get_column("lease_mac").to_list() == [PHONE_MAC]


def test_leases_are_stored_and_serve_a_later_replay(tmp_path):
    """The capture with the DHCP exchange is replayed first; the day's Squid log later, by another
    process: the leases come back from the store, so the proxy lines still name the right devices."""
    from storage.store import Store

    pcap, log = write_inputs(tmp_path)
    store = tmp_path / "store"
    config = SCHOOL_DAY / "ictwatch.yaml"
    run_cli("replay", "--config", config, pcap, store=store, check=True)
    run_cli("replay", "--config", config, pcap, store=store, check=True)  # again: leases are not doubled
    run_cli("replay", "--config", config, log, store=store, check=True)
    db = Store(f"chdb://{store}")
    try:
        rows = db.activity(None, None, None).filter(kind="proxy").sort("ts").to_dicts()
        leases = db.leases()
    finally:
        db.close()
    assert [(r["device"], r["location"]) for r in rows] == [
        ("LT-SOKAFOR", "Classroom block"), ("PH-RBAKER", "Classroom block"), ("PH-RBAKER", "Staff room"),
        ("", "Classroom block"), ("", "Staff room")]
    assert leases.height == 3


def test_place_by_vlan_confidence_and_randomised_macs():
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    outside = Observation(us("09:00"), "tls", "pcap", "t#1", "192.168.99.5", 5000, "192.0.2.1", 443, "tcp",
                          "da:a1:19:00:00:01", 20, host="www.example.org")  # no subnet matches; VLAN 20 does
    staff = Observation(us("09:00"), "tls", "pcap", "t#2", "10.20.1.31", 5000, "192.0.2.1", 443, "tcp",
                        "3c:22:fb:30:00:01", host="www.example.org")
    rows = engine.evaluate(to_table([outside, staff])).to_dicts()
    assert [(r["location"], r["mac_randomised"], r["identity_confidence"], r["device"]) for r in rows] == [
        ("Staff room", True, None, None), ("Staff room", False, "high", "PH-SOKAFOR")]


def test_dhcpv6_reply_is_a_lease():
    """A DHCPv6 REPLY that assigns an address is a lease like a v4 ACK: the address's later traffic names
    the device whose DUID asked for it."""
    v6 = "2001:db8:20::1234"
    reply = Observation(us("08:00"), "dhcp", "pcap", "day.pcap#1", "fe80::ff", 547, "fe80::1", 546, "udp", LAPTOP_MAC,
                        dhcp_type="REPLY", assigned_ip=v6, lease_s=7200)
    engine = settings.load(SCHOOL_DAY / "ictwatch.yaml").engine()
    df = engine.evaluate(to_table([reply, proxy("08:30", v6), proxy("10:30", v6)]))
    got = [(r["device"], r["user"]) for r in df.iter_rows(named=True) if r["kind"] == "proxy"]
    assert got == [("LT-SOKAFOR", "sokafor"), (None, None)]  # the lease's 7200 s ran out at 10:00


def test_an_access_point_named_by_the_dhcp_relay_places_the_client(tmp_path):
    """The laptop's lease came through the Wi-Fi controller, whose option 82 names the staff-room access
    point: its address is in the classroom subnet, but while that lease lasts it is in the staff room.
    The phone's lease was not relayed: its place is its subnet's."""
    from tests.conftest import school_config

    config = school_config(tmp_path / "school")
    network = config.parent / "network.yaml"
    network.write_text(network.read_text().replace(
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20}",
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20, relay_ids: [ap-staffroom]}"))
    laptop = ack("08:00", LAPTOP_MAC, SHARED_IP, 3600)
    laptop.dhcp_circuit_id = "AP-STAFFROOM-1:VS-Staff"
    other_ip = "10.20.10.51"
    engine = settings.load(config).engine()
    df = engine.evaluate(to_table([laptop, ack("08:00", PHONE_MAC, other_ip, 3600), proxy("08:30", SHARED_IP),
                                   proxy("08:31", other_ip), proxy("09:30", SHARED_IP)]))
    got = [(r["device"], r["location"], r["location_kind"]) for r in df.iter_rows(named=True) if r["kind"] == "proxy"]
    assert got == [("LT-SOKAFOR", "Staff room", "staff_room"), ("PH-RBAKER", "Classroom block", "classroom"),
                   (None, "Classroom block", "classroom")]  # 09:30: the lease has ended, and so has its place
