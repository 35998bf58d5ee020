"""The school-day capture decoded here and by Wireshark's tshark: same names, hosts and server names."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import pytest

from collector.sources import open_source
from tests.conftest import SCHOOL_DAY

PCAP = SCHOOL_DAY / "school-day.pcap"


def tshark(field: str, display_filter: str) -> Counter:
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark is not installed (./dev test installs it when run as root)")
    out = subprocess.run([exe, "-n", "-r", str(PCAP), "-Y", display_filter, "-T", "fields", "-e", field],
                         capture_output=True, text=True, check=True).stdout
    return Counter(line.lower() for line in out.splitlines() if line)


def ours(kind: str, attr: str) -> Counter:
    out: list = []
    open_source(PCAP).run(out.append)
    return Counter(getattr(o, attr) for o in out if o.kind == kind)


def test_tls_server_names_match_tshark():
    # Nine HTTPS sessions, and the ClientHellos sent after STARTTLS in the two SMTP sessions.
    theirs = tshark("tls.handshake.extensions_server_name", "tls.handshake.type == 1")
    assert ours("tls", "sni") == theirs
    assert sum(theirs.values()) == 11


def test_dns_query_names_match_tshark():
    assert ours("dns", "host") == tshark("dns.qry.name", "dns.flags.response == 0")


def test_http_hosts_match_tshark():
    assert ours("http", "host") == tshark("http.host", "http.request")
