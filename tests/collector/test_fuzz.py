"""Mutated input never raises out of the collector: frames, whole captures and log lines, from hypothesis.

Seeds are real: the school-day capture's frames (every protocol the decoder reads but DHCPv6, whose
frames come from its own test, and the DHT, whose come from suricata-verify's capture), and the peer traces
when present. Mutations flip bytes, cut frames
short and splice frames together. `derandomize` keeps CI reproducible; run with HYPOTHESIS_PROFILE=deep
for many more examples.
"""

from __future__ import annotations

import io
import os
import re
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.packet.packets import PacketDecoder
from collector.packet.pcap import CaptureError, TruncatedCapture, read_packets
from collector.skips import SkipCounter
from collector.sources import CaptureSource, InputError, open_source
from tests.conftest import ROOT, SCHOOL_DAY, ZEEK

settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _seed_frames() -> list[tuple[int, bytes]]:
    captures = sorted((ROOT / "tests" / "collector" / "packet" / "captures").glob("*.pcap"))  # DHT's, from Suricata
    paths = [SCHOOL_DAY / "school-day.pcap", *captures, *(sorted(ZEEK.glob("Z*.pcap")) if ZEEK.exists() else [])]
    frames = []
    for path in paths:
        try:
            with path.open("rb") as f:
                frames += [(lt, data) for _n, _ts, lt, data in read_packets(f)]
        except (CaptureError, TruncatedCapture):
            pass
    from tests.collector.packet.test_dhcp6 import frames as dhcp6_frames  # no capture here has DHCPv6

    return frames + [(1, bytes(frame)) for frame in dhcp6_frames()]


SEEDS = _seed_frames()
DOCUMENTED_REASONS = set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / "observation-fields.md").read_text().split(
    "Frames that cannot be decoded", 1)[1].split("\n\n", 1)[0])) - {"decoder_error"}
"""The skip reasons docs/observation-fields.md lists (a decoder error is a bug, never an expected reason)."""


@st.composite
def mutated_frame(draw: st.DrawFn) -> tuple[int, bytes]:
    linktype, data = draw(st.sampled_from(SEEDS))
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    if draw(st.integers(0, 9)) == 0:
        linktype = draw(st.sampled_from([0, 1, 12, 101, 108, 113, 276, 147]))
    return linktype, bytes(buf)


@given(st.lists(mutated_frame(), min_size=1, max_size=40))
def test_mutated_frames_never_raise(frames):
    skips = SkipCounter()
    decoder = PacketDecoder(lambda obs: None, skips, "fuzz")
    for i, (linktype, data) in enumerate(frames, 1):
        decoder.packet(i, 1_781_596_200_000_000 + i * 1000, linktype, data)  # no safety net: must not raise
    decoder.finish()
    assert set(skips.by_reason) <= DOCUMENTED_REASONS  # every bad frame counted under a documented reason


def _pcap(frames: list[tuple[int, bytes]]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, (_lt, data) in enumerate(frames):
        out += struct.pack("<IIII", 1_781_596_200 + i, 0, len(data), len(data)) + data
    return out


@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=20), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_mutated_captures_are_read_or_refused_never_crash(tmp_path, frames, data):
    raw = bytearray(_pcap(frames))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "fuzz.pcap"
    path.write_bytes(bytes(raw))
    try:
        source = CaptureSource(path)
        source.run(lambda obs: None)
    except InputError:
        return  # unreadable from its first bytes: refused, exit status 2
    assert "decoder_error" not in source.skips.by_reason  # every skip has a real reason


@given(st.lists(st.text(max_size=200), max_size=20))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_garbage_log_lines_are_counted(tmp_path, lines):
    good = "1781596202.120 412 10.20.10.21 TCP_MISS/200 48211 GET http://a.example/ u HIER_DIRECT/1.2.3.4 -"
    path = tmp_path / "access.log"
    path.write_text("\n".join([good, *lines, good]) + "\n", encoding="utf-8", errors="surrogatepass")
    out: list = []
    source = open_source(path)  # read as Squid's native format: its first line is one
    source.run(out.append)
    nonblank = sum(1 for line in "\n".join(lines).split("\n")  # blank: ASCII white space only (lines.is_blank)
                   if line.encode("utf-8", "surrogatepass").strip())
    assert len(out) >= 2 and len(out) + source.skips.total == 2 + nonblank


def test_seeds_cover_every_protocol():
    out: list = []
    decoder = PacketDecoder(out.append, SkipCounter(), "seeds")
    for i, (lt, data) in enumerate(SEEDS, 1):
        decoder.packet(i, 1_781_596_200_000_000 + i, lt, data)
    decoder.finish()
    assert {"dns", "tls", "http", "email", "p2p", "flow"} <= {o.kind for o in out}


def test_streams_are_bytes_io_friendly():
    assert list(read_packets(io.BytesIO(_pcap(SEEDS[:3])))) and len(SEEDS) > 100


_FILTER_SEEDS = [
    ("e2guardian", "2026.6.16 9:05:01 rbaker 10.20.10.50 http://www.casino.test/ *DENIED* Banned site: casino.test GET "
                   "0 0 Banned Sites 1 403 - 10.20.10.50 staff Mozilla/5.0 (X11) - - - -"),
    ("e2guardian_csv", '"2026.6.16 9:05:01","rbaker","10.20.10.50","http://a.test/","-","GET","12","0","-","1","200",'
                       '"text/html","10.20.10.50","staff","curl/8","-","-","-","-"'),
    ("squidguard", "2026-06-16 09:05:01 [42] Request(staff/gambling/-) http://www.casino.test/ 10.20.10.50/- rbaker "
                   "GET REDIRECT"),
    ("logformat", '16/Jun/2026:09:05:01 +0100 10.20.10.50:51234 rbaker GET http://a.test/ 200 12 5 TCP_MISS "curl/8"'),
]


@given(st.sampled_from(_FILTER_SEEDS), st.data())
def test_mutated_filter_and_logformat_lines_parse_or_are_refused(seed, data):
    """A mutated e2guardian, squidGuard or custom-logformat line gives an observation or a ValueError."""
    from zoneinfo import ZoneInfo

    from collector.logs.filterlogs import parse_e2guardian, parse_e2guardian_csv, parse_squidguard
    from collector.logs.squid_logformat import LogFormat

    kind, line = seed
    chars = list(line)
    for _ in range(data.draw(st.integers(1, 6))):
        chars[data.draw(st.integers(0, len(chars) - 1))] = data.draw(st.characters())
    mutated = "".join(chars)[: data.draw(st.integers(0, len(chars)))]
    zone = ZoneInfo("Europe/London")
    custom = LogFormat('%tl %>a:%>p %un %rm %ru %>Hs %<st %tr %Ss "%{User-Agent}>h"')
    parse = {"e2guardian": lambda s: parse_e2guardian(s, "f:1", zone),
             "e2guardian_csv": lambda s: parse_e2guardian_csv(s, "f:1", zone),
             "squidguard": lambda s: parse_squidguard(s, "f:1", zone),
             "logformat": lambda s: custom.parse(s, "f:1")}[kind]
    try:
        obs = parse(mutated)
    except ValueError:
        return
    assert obs.kind == "proxy" and obs.src_ip
