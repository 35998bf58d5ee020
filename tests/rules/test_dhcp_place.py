"""A DHCP message is placed where its client is, never where the DHCP server is.

The visitor's laptop joins the guest Wi-Fi (10.20.40.0/24) through a relay; the DHCP server is in the
server room (10.20.0.0/24, VLAN 10), where the capture was made (tests/dhcp_relay.py). Every one of its
DHCP observations, v4 and v6, belongs on the guest network, and the P7 rule for unknown hardware, which
spares the guest network, must not fire for it."""

from __future__ import annotations

import datetime as dt

import pytest
from scapy.utils import wrpcap

from collector.observation import Observation, to_table
from collector.sources import open_source
from ictwatch import settings
from tests.conftest import school_config
from tests.dhcp_relay import TABLET_MAC, VISITOR_MAC, v4_frames, v6_frames

GUEST = "{name: Guest Wi-Fi, kind: guest, subnets: [10.20.40.0/24, 2001:db8:40::/64], vlan: 60, relay_ids: [vs-guest]}"
SERVERS = "{name: Servers, kind: server, subnets: [10.20.0.0/24], vlan: 10}"


def _engine(tmp_path, guest: str = GUEST):
    """The school day's configuration with the guest Wi-Fi, and a v6 subnet for the server room."""
    config = school_config(tmp_path / "school")
    network = config.parent / "network.yaml"
    text = network.read_text()
    assert SERVERS in text
    servers = SERVERS.replace("10.20.0.0/24", "10.20.0.0/24, 2001:db8:10::/64")
    network.write_text(text.replace(SERVERS, f"{servers}\n  - {guest}"))  # a place among the map's places
    return settings.load(config).engine()


def _observations(tmp_path) -> list[Observation]:
    path = tmp_path / "relayed.pcap"
    wrpcap(str(path), v4_frames() + v6_frames())
    out: list[Observation] = []
    open_source(path).run(out.append)
    return [o for o in out if o.kind == "dhcp"]


def test_every_relayed_message_is_placed_on_the_guest_network(tmp_path):
    rows = _engine(tmp_path).evaluate(to_table(_observations(tmp_path))).to_dicts()
    assert [(r["dhcp_type"], r["src_mac"], r["location"], r["location_kind"], r["device_registered"])
            for r in rows] == [
        ("DISCOVER", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("OFFER", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("REQUEST", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("ACK", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("REQUEST", TABLET_MAC, "Guest Wi-Fi", "guest", False),
        ("ACK", TABLET_MAC, "Guest Wi-Fi", "guest", False),
        ("SOLICIT", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("ADVERTISE", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("REQUEST", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
        ("REPLY", VISITOR_MAC, "Guest Wi-Fi", "guest", False),
    ]
    assert all(r["rule_ids"] == [] for r in rows)  # the guest network is spared: no unregistered-device-joined


def test_the_unknown_hardware_rule_still_fires_off_the_guest_network(tmp_path):
    """The same exchanges where the relay's subnet is a staff network: each address given (two ACKs and
    the v6 REPLY) is unknown hardware joining it, placed there and not in the server room."""
    staff = "{name: Staff Wi-Fi, kind: staff_room, subnets: [10.20.40.0/24, 2001:db8:40::/64]}"
    rows = _engine(tmp_path, staff).evaluate(to_table(_observations(tmp_path))).to_dicts()
    assert {r["location"] for r in rows} == {"Staff Wi-Fi"}
    assert [r["dhcp_type"] for r in rows if "unregistered-device-joined" in r["rule_ids"]] == ["ACK", "ACK", "REPLY"]


US = int(dt.datetime(2026, 6, 16, 9, 0, tzinfo=dt.UTC).timestamp() * 1_000_000)


def _dhcp(kind: str, src: str, sport: int, dst: str, dport: int, *, mac: str | None = "3c:22:fb:30:00:50",
          vlan: int | None = None, **fields) -> Observation:
    return Observation(US, "dhcp", "pcap", "t.pcap#1", src, sport, dst, dport, "udp", mac, vlan, dhcp_type=kind,
                       **fields)


@pytest.mark.parametrize(("obs", "place"), [
    # option 82 names the staff-room access point; the relay's own subnet is a classroom's
    (_dhcp("ACK", "10.20.0.2", 67, "10.20.10.1", 67, vlan=10, dhcp_relay_ip="10.20.10.1",
           dhcp_circuit_id="AP-STAFFROOM-1:VS-Staff", assigned_ip="10.20.10.60"), "Staff room"),
    # a relay id is a whole word: ap-staffroom is not in oldap-staffroom-1, so the relay's subnet decides
    (_dhcp("ACK", "10.20.0.2", 67, "10.20.10.1", 67, vlan=10, dhcp_relay_ip="10.20.10.1",
           dhcp_circuit_id="OLDAP-STAFFROOM-1", assigned_ip="10.20.10.60"), "Classroom block"),
    # giaddr only: the relay's subnet beats the client's address
    (_dhcp("OFFER", "10.20.0.2", 67, "10.20.30.1", 67, vlan=10, dhcp_relay_ip="10.20.30.1",
           assigned_ip="10.20.10.61"), "Hall"),
    # not relayed, the server's broadcast ACK on the client's VLAN: the address it gives
    (_dhcp("ACK", "10.20.0.2", 67, "255.255.255.255", 68, vlan=40, assigned_ip="10.20.1.62"), "Staff room"),
    # the server's ACK to an INFORM: no address given; the client's own (ciaddr)
    (_dhcp("ACK", "10.20.0.2", 67, "10.20.2.63", 68, dhcp_client_ip="10.20.2.63"), "School office"),
    # a DISCOVER from 0.0.0.0 on VLAN 50, not relayed: the VLAN
    (_dhcp("DISCOVER", "0.0.0.0", 68, "255.255.255.255", 67, vlan=50), "Hall"),
    # a client's RELEASE, unicast from its address
    (_dhcp("RELEASE", "10.20.10.64", 68, "10.20.0.2", 67, vlan=40), "Classroom block"),
    # a NAK to a relay the network map does not know: nothing says where; not the server room's VLAN
    (_dhcp("NAK", "10.20.0.2", 67, "192.168.77.1", 67, vlan=10, dhcp_relay_ip="192.168.77.1"), None),
    # a v6 REPLY, not relayed, with no address to give: the frame to the client is on its link (VLAN 20)
    (_dhcp("REPLY", "fe80::ff", 547, "fe80::3", 546, vlan=20), "Staff room"),
    # the same REPLY relayed, on the server's VLAN, with a link-address outside the map
    (_dhcp("REPLY", "2001:db8:10::2", 547, "2001:db8:77::1", 547, vlan=10, dhcp_relay_ip="2001:db8:77::1",
           dhcp_client_ip="fe80::3"), None),
])
def test_the_order_of_evidence(tmp_path, obs, place):
    network_map = (
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20}",
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20, relay_ids: [ap-staffroom]}")
    config = school_config(tmp_path / "school")
    network = config.parent / "network.yaml"
    network.write_text(network.read_text().replace(*network_map))
    row = settings.load(config).engine().evaluate(to_table([obs])).to_dicts()[0]
    assert row["location"] == place


def test_a_dhcp_message_names_its_clients_device_not_an_addresss(tmp_path):
    """An ACK to unknown hardware, sent from an address the register reserves for the school office's PC
    (a DHCP service on it): the device is the client's MAC's, unregistered, not the office PC."""
    engine = settings.load(school_config(tmp_path / "school")).engine()
    ack = _dhcp("ACK", "10.20.2.21", 67, "255.255.255.255", 68, vlan=40, assigned_ip="10.20.10.65")
    row = engine.evaluate(to_table([ack])).to_dicts()[0]
    assert (row["device"], row["device_registered"], row["location"]) == (None, False, "Classroom block")
    assert row["rule_ids"] == ["unregistered-device-joined"]


def test_a_renewal_is_placed_by_its_own_lease_only(tmp_path):
    """The phone's lease came through the staff-room access point (option 82) with a classroom address;
    its renewal, unicast and not relayed, is in the staff room while that lease lasts. Another MAC asking
    for the same address is not placed by the phone's lease: it is where the address's subnet is."""
    config = school_config(tmp_path / "school")
    network = config.parent / "network.yaml"
    network.write_text(network.read_text().replace(
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20}",
        "{name: Staff room, kind: staff_room, subnets: [10.20.1.0/24], vlan: 20, relay_ids: [ap-staffroom]}"))
    ack = _dhcp("ACK", "10.20.0.2", 67, "10.20.10.1", 67, dhcp_relay_ip="10.20.10.1",
                dhcp_circuit_id="AP-STAFFROOM-1:VS-Staff", assigned_ip="10.20.10.66", lease_s=3600)
    renew = _dhcp("REQUEST", "10.20.10.66", 68, "10.20.0.2", 67, dhcp_client_ip="10.20.10.66")
    other = _dhcp("REQUEST", "0.0.0.0", 68, "255.255.255.255", 67, mac="3c:22:fb:30:00:51", requested_ip="10.20.10.66")
    rows = settings.load(config).engine().evaluate(to_table([ack, renew, other])).to_dicts()
    assert [r["location"] for r in rows] == ["Staff room", "Staff room", "Classroom block"]


def test_a_lost_ipad_is_reported_where_it_is(tmp_path):
    """IPAD-BANK-3B (lost since 1 June) gets an address in the hall, relayed from the server room: the I4
    alert and its explanation say the hall, not the server room."""
    import polars as pl

    from rules.explain import explain
    from storage.store import to_activity_arrow

    engine = settings.load(school_config(tmp_path / "school")).engine()
    ack = _dhcp("ACK", "10.20.0.2", 67, "10.20.30.1", 67, mac="f0:99:bf:10:00:0a", vlan=10,
                dhcp_relay_ip="10.20.30.1", assigned_ip="10.20.30.60")
    out = engine.evaluate(to_table([ack]))
    row = out.to_dicts()[0]
    assert (row["device"], row["rule_ids"], row["location"]) == ("IPAD-BANK-3B", ["lost-device-seen"], "Hall")
    stored = pl.from_arrow(to_activity_arrow(out))
    assert isinstance(stored, pl.DataFrame)
    text = explain(engine, stored)
    assert "place: Hall (hall)" in text and "Servers" not in text
