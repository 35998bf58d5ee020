"""`decode` against Zeek's own logs for the same captures (../shared/peer-traces/zeek)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from urllib.parse import urlsplit

import pytest

from collector.sources import open_source
from tests.conftest import ROOT, ZEEK, need


def decode(name: str) -> tuple[list, object]:
    source = open_source(need(ZEEK) / name)
    out: list = []
    source.run(out.append)
    return out, source


def zeek_rows(trace: str, log: str) -> list[dict]:
    """Rows of Zeek's TSV log `log` for `trace` (ZNN.expected/<test>/<log>.log), keyed by field name."""
    (path,) = need(ZEEK).glob(f"{trace}.expected/*/{log}.log")
    rows, fields = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def test_z01_dns_family_matches_zeek_row_for_row():
    """All 34 rows of Zeek's dns.log: unicast DNS, mDNS (including announcements with no question, named
    by their first answer), LLMNR and NetBIOS-NS (names decoded), each repeat of a query counted; the
    `service` field tells the DNS-family members apart by port."""
    obs, _ = decode("Z01_wikipedia.pcap")
    port_of = {"dns": "53", "mdns": "5353", "llmnr": "5355", "nbns": "137"}
    ours = Counter((port_of[o.service], o.host, o.qtype or "-", o.rcode or "-", ",".join(o.answers) or "-")
                   for o in obs if o.kind == "dns")
    theirs = Counter((r["id.resp_p"], r["query"], r["qtype_name"], r["rcode_name"], r["answers"])
                     for r in zeek_rows("Z01", "dns"))
    assert sum(theirs.values()) == 34
    assert ours == theirs


def test_z01_http_hosts_and_uris_match_zeek():
    """Every request Zeek logged, with host, URI and status. One more here: frame 6 is a request on a
    connection whose handshake came before the capture started; Zeek's conn.log marks it OTH and its
    HTTP analyser does not attach mid-stream, while this decoder reads a request line wherever it is."""
    obs, _ = decode("Z01_wikipedia.pcap")
    ours = Counter((o.host, _uri(o.url), o.method, o.status) for o in obs if o.kind == "http")
    theirs = Counter((r["host"], r["uri"], r["method"], int(r["status_code"])) for r in zeek_rows("Z01", "http"))
    assert len(theirs) and sum(theirs.values()) == 14
    extra = ours - theirs
    assert theirs - ours == Counter()
    assert extra == Counter({("www.wikipedia.org", "/", "GET", 304): 1})


def test_z06_http_request_and_flow_bytes_match_zeek():
    obs, _ = decode("Z06_http__get.pcap")
    (req,) = [o for o in obs if o.kind == "http"]
    (z,) = zeek_rows("Z06", "http")
    assert (req.host, _uri(req.url), req.user_agent, req.status) == (
        z["host"], z["uri"], z["user_agent"], int(z["status_code"]))
    assert (req.src_ip, req.src_port, req.dst_ip, req.dst_port) == (
        z["id.orig_h"], int(z["id.orig_p"]), z["id.resp_h"], int(z["id.resp_p"]))
    (flow,) = [o for o in obs if o.kind == "flow"]
    (c,) = zeek_rows("Z06", "conn")
    assert (flow.bytes_out, flow.bytes_in, flow.packets_out, flow.packets_in) == (
        int(c["orig_ip_bytes"]), int(c["resp_ip_bytes"]), int(c["orig_pkts"]), int(c["resp_pkts"]))


def test_z01_http_flow_bytes_match_zeek_ip_bytes():
    """Flows that Zeek saw from their first packet: IP bytes and packets each way agree exactly."""
    obs, _ = decode("Z01_wikipedia.pcap")
    flows = {(o.src_ip, o.src_port, o.dst_ip, o.dst_port): o for o in obs if o.kind == "flow"}
    checked = 0
    for c in zeek_rows("Z01", "conn"):
        if c["id.resp_p"] != "80" or c["conn_state"] == "OTH":
            continue
        f = flows[(c["id.orig_h"], int(c["id.orig_p"]), c["id.resp_h"], int(c["id.resp_p"]))]
        assert (f.bytes_out, f.bytes_in, f.packets_out, f.packets_in) == (
            int(c["orig_ip_bytes"]), int(c["resp_ip_bytes"]), int(c["orig_pkts"]), int(c["resp_pkts"]))
        checked += 1
    assert checked == 8


def test_z07_tls_sni_matches_zeek():
    obs, _ = decode("Z07_tls__tls-conn-with-extensions.pcap")
    ours = [(o.src_ip, o.src_port, o.dst_ip, o.dst_port, o.sni, o.tls_version) for o in obs if o.kind == "tls"]
    theirs = [(r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]), r["server_name"],
               r["version"]) for r in zeek_rows("Z07", "ssl")]
    assert ours == theirs == [("192.168.1.105", 62045, "74.125.224.79", 443, "ssl.gstatic.com", "TLSv10")]


@pytest.mark.parametrize(
    ("trace", "name"),
    [
        ("Z08", "Z08_tls__tls13draft23-chrome67.0.3368.0-canary.pcap"),  # TLS 1.3 draft 23
        ("Z09", "Z09_tls__tls13-ech.pcap"),  # Encrypted Client Hello: the outer name
        ("Z11", "Z11_tls__google-cert-repeat.pcap"),  # four hellos without SNI, four with
    ],
)
def test_tls_server_names_and_versions_match_zeek(trace, name):
    obs, _ = decode(name)
    ours = Counter((o.src_ip, o.dst_ip, o.dst_port, o.sni or "-", o.tls_version) for o in obs if o.kind == "tls")
    theirs = Counter((r["id.orig_h"], r["id.resp_h"], int(r["id.resp_p"]), r["server_name"], r["version"])
                     for r in zeek_rows(trace, "ssl"))
    assert ours == theirs


def test_z09_ech_is_recorded():
    obs, _ = decode("Z09_tls__tls13-ech.pcap")
    assert [(o.sni, o.ech) for o in obs if o.kind == "tls"] == [("cloudflare-ech.com", True)] * 2


@pytest.mark.parametrize(
    ("name", "reason", "count"),
    [
        ("Z25_trunc__ip4-trunc.pcap", "truncated_ip", 1),  # Zeek: weird truncated_IP
        ("Z26_trunc__trunc-hdr.pcap", "truncated_link", 1),  # caplen shorter than the Ethernet header
        ("Z27_tcp__truncated-header.pcap", "truncated_tcp", 1),  # frame 1: TCP options past the snap length
    ],
)
def test_malformed_peer_captures_are_counted_and_skipped(name, reason, count):
    obs, source = decode(name)
    assert source.skips.by_reason == {reason: count}


def test_z27_headers_only_capture_counts_every_packet_zeek_counts():
    """Z27 was captured with a 54-byte snap length: headers only. Zeek's baseline (`out`) has one line
    per packet it processed; it drops frame 1, whose TCP options run past the captured bytes. The
    flow here holds exactly the other packets, with bytes from the IP length fields."""
    obs, source = decode("Z27_tcp__truncated-header.pcap")
    (out,) = need(ZEEK).glob("Z27.expected/*/out")
    zeek_packets = sum(1 for line in out.read_text().splitlines() if "orig_h=" in line)
    (flow,) = [o for o in obs if o.kind == "flow"]
    assert (flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port) == ("201.186.157.67", 60827, "128.3.26.249", 25)
    assert flow.packets_out + flow.packets_in == zeek_packets == 23
    # IP total lengths of frames 2-24, summed by hand from the capture's headers (tshark agrees):
    # client 40+40+64+98+74+46+40+46+40 = 488, server 44+124+40+244+40+86+40+119+40+63+40+81+40+40 = 1041.
    assert (flow.bytes_out, flow.bytes_in) == (488, 1041)


def test_z28_empty_capture():
    obs, source = decode("Z28_empty.pcap")
    assert (obs, source.packets, source.skips.total) == ([], 0, 0)


def _uri(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_peer_folder_is_referenced_not_copied():
    assert not list(ROOT.glob("**/Z01_wikipedia.pcap"))


@pytest.mark.parametrize("trace", ["Z22", "Z23"])
def test_dhcp_transactions_match_zeek(trace):
    """One observation per DHCP message here; Zeek writes one row per transaction (xid), keeping the last
    requested address and taking the assigned address and lease from the ACK. Grouped the same way, every
    row agrees: MAC, host name, domain, requested and assigned address, lease, message types, server."""
    (path,) = need(ZEEK).glob(f"{trace}_*.pcap")
    obs, source = decode(path.name)
    by_xid: dict[int, list] = {}
    for o in obs:
        if o.kind == "dhcp":
            by_xid.setdefault(o.dhcp_xid, []).append(o)

    def first(msgs, attr, types=None):
        return next((getattr(m, attr) for m in msgs if getattr(m, attr) and (types is None or m.dhcp_type in types)),
                    None) or "-"

    def last(msgs, attr):
        return first(list(reversed(msgs)), attr)

    ours = sorted((
        first(m, "src_mac"), first(m, "hostname"), first(m, "domain"), last(m, "requested_ip"),
        first(m, "assigned_ip", {"ACK"}), f"{first(m, 'lease_s', {'ACK'})}", ",".join(x.dhcp_type for x in m),
        first(m, "src_ip", {"ACK"}),
    ) for m in by_xid.values())
    theirs = sorted((
        r["mac"], r["host_name"], r["domain"], r["requested_addr"], r["assigned_addr"],
        r["lease_time"].split(".")[0], r["msg_types"], r["server_addr"],
    ) for r in zeek_rows(trace, "dhcp"))
    assert ours == theirs
    assert source.skips.total == 0


@pytest.mark.parametrize("trace", ["Z17", "Z18"])
def test_smtp_transactions_match_zeek(trace):
    (path,) = need(ZEEK).glob(f"{trace}_*.pcap")
    obs, _ = decode(path.name)
    ours = sorted((o.src_ip, o.dst_port, o.helo, o.mail_from or "-", ",".join(sorted(o.rcpt_to)) or "-",
                   "T" if o.starttls else "F") for o in obs if o.kind == "email")
    theirs = sorted((r["id.orig_h"], int(r["id.resp_p"]), r["helo"], r["mailfrom"],
                     ",".join(sorted(r["rcptto"].split(","))), r["tls"]) for r in zeek_rows(trace, "smtp"))
    assert ours == theirs


def test_z19_imap_starttls_and_z21_pop3_logins_in_clear():
    """Z19: IMAP upgraded with STARTTLS (Zeek: service imap,ssl). Z21 (Zeek's pop3 `out`): five sessions;
    AUTH PLAIN in clear in three, refused once ("authentication failed") and accepted twice for
    digitalinvestigator@networksims.com."""
    obs, _ = decode("Z19_tls__imap-starttls.pcap")
    assert [(o.service, o.starttls, o.cleartext_credentials) for o in obs if o.kind == "email"] == [
        ("imap", True, False)]
    obs, _ = decode("Z21_pop3__pop3.pcap")
    sessions = [(o.auth_mechanism, o.auth_user, o.auth_success) for o in obs if o.kind == "email"]
    assert len(sessions) == 5
    assert sorted(s for s in sessions if s[0]) == [
        ("PLAIN", "digitalinvestigator@networksims.com", False),
        ("PLAIN", "digitalinvestigator@networksims.com", True),
        ("PLAIN", "digitalinvestigator@networksims.com", True)]


def test_mail_encryption_follows_zeeks_tls_and_ssl_logs():
    """Zeek's smtp.log says tls=F for both Z17 transactions and tls=T for Z18, whose ssl.log (like Z19's, the
    IMAP upgrade) has the handshake that followed (established=T); Z21's five POP3 sessions never ask for STLS
    (its sessions have no ssl.log)."""
    encryption = {}
    for trace in ("Z17_smtp", "Z18_tls__smtp-starttls", "Z19_tls__imap-starttls", "Z21_pop3__pop3"):
        obs, _ = decode(f"{trace}.pcap")
        encryption[trace[:3]] = sorted(o.mail_encryption for o in obs if o.kind == "email")
    assert [r["established"] for z in ("Z18", "Z19") for r in zeek_rows(z, "ssl")] == ["T", "T"]
    assert encryption == {"Z17": ["none", "none"], "Z18": ["starttls"], "Z19": ["starttls"], "Z21": ["none"] * 5}


def test_z18_mail_server_named_by_its_greeting_as_tshark_reads_it():
    """Z18's client sends no SNI after STARTTLS and looks up no name: the server's name is the first word of
    its 220 greeting, as tshark decodes that line (Zeek's ssl.log has no server_name for it)."""
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark is not installed (./dev test installs it when run as root)")
    trace = need(ZEEK) / "Z18_tls__smtp-starttls.pcap"
    lines = subprocess.run([exe, "-n", "-r", str(trace), "-Y", "smtp.response.code == 220", "-T", "fields",
                            "-e", "smtp.response"], capture_output=True, text=True, check=True).stdout.splitlines()
    greeting = lines[0]
    assert [r["server_name"] for r in zeek_rows("Z18", "ssl")] == ["-"]
    obs, _ = decode(trace.name)
    assert {(o.kind, o.host) for o in obs if o.kind in ("email", "tls")} == {
        ("email", greeting.split(" ")[1]), ("tls", greeting.split(" ")[1])}
    assert greeting.split(" ")[1] == "mx.google.com"


def test_z17_first_session_logs_in_with_auth_login_in_clear():
    obs, _ = decode("Z17_smtp.pcap")
    (first,) = [o for o in obs if o.kind == "email" and o.helo == "GP"]
    assert (first.auth_mechanism, first.auth_user, first.auth_success, first.cleartext_credentials) == (
        "LOGIN", "gurpartap@patriots.in", True, True)


def test_z24_tracker_announce_matches_zeek():
    """Zeek's bittorrent tracker test prints the announce URI it saw; the info-hash is that URI's
    `info_hash`, %-decoded by hand: e4 be 9e 'M' b8 'v' e3 e3 17 97 'x' b0 3e 90 'b' 97 be 5c 8d be."""
    obs, _ = decode("Z24_bittorrent__tracker.pcap")
    (announce,) = [o for o in obs if o.kind == "p2p"]
    (out,) = need(ZEEK).glob("Z24.expected/*/output")
    line = next(line for line in out.read_text().splitlines() if "/announce?" in line)
    zeek_uri = line[line.index("/announce?") :].split(", ")[0]
    assert _uri(announce.url) == zeek_uri
    assert (announce.src_ip, announce.dst_ip, announce.dst_port) == ("10.0.0.201", "91.189.95.21", 6969)
    assert announce.info_hash == "e4be9e4db876e3e3179778b03e906297be5c8dbe"


FLOW_TRACES = ["Z01", "Z06", "Z19", "Z21", "Z22"]


@pytest.mark.parametrize("trace", FLOW_TRACES)
def test_flows_match_zeek_conn_log(trace):
    """Every conn.log row: 5-tuple, packets and IP bytes each way, and connection state, exactly.
    (Z04's one row is checked apart: Zeek drops its packets for their bad UDP checksum.)"""
    facts = json.loads((need(ZEEK) / "facts.json").read_text())
    (path,) = ZEEK.glob(f"{trace}_*.pcap")
    obs, _ = decode(path.name)
    ours = Counter((o.src_ip, o.src_port, o.dst_ip, o.dst_port, o.proto, o.packets_out, o.packets_in, o.bytes_out,
                    o.bytes_in, o.conn_state) for o in obs if o.kind == "flow")
    theirs = Counter((r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]), r["proto"],
                      int(r["orig_pkts"]), int(r["resp_pkts"]), int(r["orig_ip_bytes"]), int(r["resp_ip_bytes"]),
                      r["conn_state"]) for r in facts[trace]["conn"])
    assert ours == theirs


def test_z04_bad_checksum_is_an_accepted_difference():
    """Zeek (without -C) discards packets whose UDP checksum is wrong, so its only row has no packets
    (OTH). ictwatch does not verify checksums (offloading makes them wrong in most gateway captures), so
    it reports the query and its flow: an accepted difference."""
    facts = json.loads((need(ZEEK) / "facts.json").read_text())
    assert [(r["conn_state"], r["history"]) for r in facts["Z04"]["conn"]] == [("OTH", "Cc")]
    obs, source = decode("Z04_dns__dns-corrupt.pcap")
    assert [o.kind for o in obs] == ["dns", "flow"] and source.skips.total == 0
