"""Flows that come without a name (the kernel's, Suricata's) named from the DNS answers seen before."""

from __future__ import annotations

import polars as pl

from collector.logs.conntrack import parse_event
from collector.naming import name_flows
from collector.observation import Observation, to_table

KERNEL = ("[1795917800.500000]\t[DESTROY] ipv4     2 tcp      6 src=10.20.10.21 dst=203.0.113.9 sport=50123 "
          "dport=443 packets=12 bytes=1800 src=203.0.113.9 dst=10.20.10.21 sport=443 dport=50123 packets=10 "
          "bytes=9000 [ASSURED] mark=0 delta-time=42 use=1\n")


def frame(*observations: Observation) -> pl.DataFrame:
    df = pl.from_arrow(to_table(list(observations)))
    assert isinstance(df, pl.DataFrame)
    return df


def dns(answer: str, host: str = "www.example.org") -> Observation:
    return Observation(1, "dns", "pcap", "a#1", "10.20.10.21", 5353, "10.20.0.2", 53, "udp", host=host,
                       answers=[answer])


def test_unnamed_flows_are_named_from_the_dns_answers_seen():
    """The kernel's flow takes the name its server's address was an answer for; the native decoder's own
    flow (named or not) is left as it is."""
    kernel = parse_event(KERNEL, "conntrack#1")
    native = Observation(2, "flow", "pcap", "a#2", "10.20.10.21", 50124, "203.0.113.9", 443, "tcp")
    df = name_flows(frame(dns("203.0.113.9"), kernel, native), {})
    assert df.get_column("host").to_list() == ["www.example.org", "www.example.org", None]


def test_names_are_remembered_from_one_frame_to_the_next():
    names: dict[str, str] = {}
    name_flows(frame(dns("203.0.113.9")), names)
    suricata = Observation(3, "flow", "suricata", "eve.json:9", "10.20.10.21", 50125, "203.0.113.9", 443, "tcp")
    elsewhere = Observation(4, "flow", "suricata", "eve.json:10", "10.20.10.21", 50126, "198.51.100.7", 443, "tcp")
    named = Observation(5, "flow", "suricata", "eve.json:11", "10.20.10.21", 50127, "203.0.113.9", 443, "tcp",
                        host="cdn.example.org")
    df = name_flows(frame(suricata, elsewhere, named), names)
    assert df.get_column("host").to_list() == ["www.example.org", None, "cdn.example.org"]
    assert names == {"203.0.113.9": "www.example.org"}
