"""Suricata's EVE output as an input: the real Suricata over the peer traces, against the native decoder."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from collector.logs.eve import EveSource, looks_like_eve
from collector.sources import open_source
from tests.conftest import SCHOOL_DAY, ZEEK

pytestmark = pytest.mark.skipif(shutil.which("suricata") is None, reason="suricata is not installed")

CONFIG = Path(__file__).with_name("suricata-eve.yaml")
TRACES = [SCHOOL_DAY / "school-day.pcap"] + [ZEEK / f"{n}.pcap" for n in (
    "Z01_wikipedia", "Z06_http__get", "Z07_tls__tls-conn-with-extensions",
    "Z13_quic__chromium-115.0.5790.110-api-cirrus-com", "Z14_quic__curl-8.1.2-dev-http3-www-google-de", "Z17_smtp",
    "Z22_dhcp__dhcp", "Z23_dhcp__dhcp_discover_param_req_and_client_id",
)] if ZEEK.exists() else [SCHOOL_DAY / "school-day.pcap"]

KEYS = {
    "dns": lambda o: (o.src_ip, o.src_port, o.dst_ip, o.dst_port, o.host, o.qtype, o.rcode, tuple(o.answers)),
    "quic": lambda o: (o.src_ip, o.dst_ip, o.dst_port, o.sni, o.quic_version, tuple(o.alpn)),
    "http": lambda o: (o.src_ip, o.src_port, o.host, o.url, o.method, o.user_agent, o.status),
    "email": lambda o: (o.src_ip, o.dst_port, o.helo, o.mail_from, tuple(sorted(o.rcpt_to))),
    "dhcp": lambda o: (o.src_mac, o.dhcp_type, o.dhcp_xid, o.hostname, o.requested_ip, o.assigned_ip),
    "flow": lambda o: (o.src_ip, o.src_port, o.dst_ip, o.dst_port, o.proto, o.packets_out, o.packets_in,
                       o.bytes_out, o.bytes_in),
}
ACCEPTED = {
    ("Z01_wikipedia.pcap", "http"): "the request on the connection begun before the capture (frame 6): "
                                    "Suricata, like Zeek, does not parse it",
    ("Z01_wikipedia.pcap", "flow"): "Suricata does not log the two flows whose only packets are mid-stream "
                                    "replies (Zeek: OTH), and its NetBIOS/LLMNR flows are keyed differently",
    ("Z17_smtp.pcap", "email"): "ictwatch writes the first SMTP session's AUTH LOGIN and the second's "
                                "transaction; Suricata logs one more transaction record for the first",
    ("Z17_smtp.pcap", "flow"): "two flows: Suricata counts 29 server packets on 10.10.1.4:1470 where the "
                               "capture has 25 (1,546 IP bytes: tshark and ictwatch agree), and it orients "
                               "the mid-stream HTTPS flow by its first packet, ictwatch by the server port",
    ("Z22_dhcp__dhcp.pcap", "flow"): "Suricata orients unicast DHCP replies from the server; ictwatch, like "
                                     "Zeek, from the client (likely server port rule)",
}
"""(trace, kind) → why Suricata and the native decoder legitimately differ there."""


def eve_for(path: Path, tmp: Path) -> list:
    subprocess.run(["suricata", "-c", str(CONFIG), "-r", str(path), "--runmode", "single", "-k", "none",
                    "-S", "/dev/null", "-l", str(tmp)], check=True, capture_output=True, timeout=120)
    source = open_source(tmp / "eve.json")
    assert isinstance(source, EveSource)
    out: list = []
    source.run(out.append)
    assert source.skips.total == 0
    return out


def native(path: Path) -> list:
    out: list = []
    open_source(path).run(out.append)
    return out


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name)
def test_eve_gives_the_native_observations(path, tmp_path):
    theirs, ours = eve_for(path, tmp_path), native(path)
    for kind, key in KEYS.items():
        a = Counter(key(o) for o in ours if o.kind == kind and (kind != "dns" or o.service == "dns"))
        b = Counter(key(o) for o in theirs if o.kind == kind)
        if (path.name, kind) in ACCEPTED:
            assert a != b, f"{path.name} {kind} now agrees: drop it from ACCEPTED"
            continue
        assert a == b, f"{path.name} {kind}: native only {a - b}, suricata only {b - a}"


@pytest.mark.parametrize("path", TRACES[:1], ids=lambda p: p.name)
def test_tls_server_names(path, tmp_path):
    """Suricata logs TLS once the handshake went far enough: every name it logs, ictwatch has too."""
    theirs = {(o.src_ip, o.dst_ip, o.dst_port, o.sni) for o in eve_for(path, tmp_path) if o.kind == "tls"}
    ours = {(o.src_ip, o.dst_ip, o.dst_port, o.sni) for o in native(path) if o.kind == "tls"}
    assert theirs <= ours


def test_detection_and_bad_lines(tmp_path):
    good = ('{"timestamp": "2026-06-16T08:00:00.000000+0000", "event_type": "dns", "src_ip": "10.0.0.1", '
            '"src_port": 5000, "dest_ip": "10.0.0.2", "dest_port": 53, "proto": "UDP", "flow_id": 1, '
            '"dns": {"type": "query", "id": 7, "rrname": "a.example", "rrtype": "A"}}')
    assert looks_like_eve(good) and not looks_like_eve('{"a": 1}') and not looks_like_eve("1157689312.049 1")
    path = tmp_path / "eve.json"
    path.write_text(good + "\n{not json\n" + '{"timestamp": "x", "event_type": "dns"}\n')
    source = open_source(path)
    out: list = []
    source.run(out.append)
    assert [(o.kind, o.host, o.rcode) for o in out] == [("dns", "a.example", None)]
    assert source.skips.by_reason == {"bad_eve_record": 2}


def test_suricata_flows_are_named_like_the_native_decoders(tmp_path):
    """A flow from Suricata takes the name of its own TLS or HTTP event, else of the DNS answer for its
    server's address, as the native decoder names flows: the school day's mail flows, by hand."""
    from tests.conftest import SCHOOL_DAY

    flows = {(o.dst_port, o.host) for o in eve_for(SCHOOL_DAY / "school-day.pcap", tmp_path) if o.kind == "flow"}
    assert {(587, "smtp.gmail.com"), (587, "smtp.office365.com"), (443, "hot-videos.example")} <= flows


def test_relayed_dhcp_replies_keep_the_relay(tmp_path):
    """Suricata's extended DHCP log gives a reply's giaddr (`relay_ip`) and ciaddr (`client_ip`, 0.0.0.0
    when empty), which the EVE reader keeps as the native decoder does; it logs no giaddr for requests."""
    from scapy.utils import wrpcap

    from tests.dhcp_relay import v4_frames

    path = tmp_path / "relayed.pcap"
    wrpcap(str(path), v4_frames())
    theirs = [o for o in eve_for(path, tmp_path) if o.kind == "dhcp"]
    ours = [o for o in native(path) if o.kind == "dhcp"]
    assert [(o.dhcp_type, o.dhcp_relay_ip, o.dhcp_client_ip) for o in theirs] == [
        (o.dhcp_type, o.dhcp_relay_ip if o.dhcp_type in ("OFFER", "ACK") else None, o.dhcp_client_ip) for o in ours]
    assert [o.dhcp_relay_ip for o in theirs if o.dhcp_type == "ACK"] == ["10.20.40.1", "10.20.40.1"]


def test_an_http_event_gives_the_file_type_of_its_url_and_content_type(tmp_path):
    event = ('{"timestamp": "2026-06-16T09:30:00.000000+0000", "event_type": "http", "src_ip": "10.20.10.21", '
             '"src_port": 50000, "dest_ip": "203.0.113.80", "dest_port": 80, "proto": "TCP", "flow_id": 9, '
             '"http": {"hostname": "dl.example.net", "url": "/download.php?id=3", "http_method": "GET", '
             '"status": 200, "http_content_type": "application/x-msdownload"}}')
    source = EveSource(tmp_path / "eve.json")
    (download,) = source.parse_line(event, "eve.json:1")
    assert (download.url, download.file_ext) == ("http://dl.example.net/download.php?id=3", "exe")
    (page,) = source.parse_line(event.replace("download.php?id=3", "news").replace("application/x-msdownload",
                                                                                  "text/html"), "eve.json:2")
    assert page.file_ext is None


def test_suricatas_smtp_events_say_in_clear_only_with_an_envelope(tmp_path):
    """Z17's two transactions carry the envelope Suricata read in clear: `none`; its record of the first
    session's end (after QUIT) has only the HELO: `unknown`, as each event is read alone. Z18's only smtp
    event has the HELO and nothing more (the STARTTLS shows in a separate `tls` event, `from_proto` smtp,
    not joined to it), so the reader cannot say: `unknown`, never `none`."""
    from tests.conftest import need

    (tmp_path / "z17").mkdir()
    (tmp_path / "z18").mkdir()
    z17 = eve_for(need(ZEEK) / "Z17_smtp.pcap", tmp_path / "z17")
    z18 = eve_for(need(ZEEK) / "Z18_tls__smtp-starttls.pcap", tmp_path / "z18")
    assert sorted((o.src_port, bool(o.mail_from), o.mail_encryption) for o in z17 if o.kind == "email") == [
        (1470, False, "unknown"), (1470, True, "none"), (49648, True, "none")]
    assert [(o.helo, o.mail_encryption) for o in z18 if o.kind == "email"] == [("openssl.client.net", "unknown")]
