"""Wireshark's tshark as an alternative decoder: its dissectors in, the same Observations out.

`TsharkCaptureSource` runs `tshark -T fields` over a capture and turns DNS transactions, TLS and QUIC
ClientHellos and HTTP requests (with their response status) into Observations with the fields the
native decoder gives them, so either can feed the pipeline (`collector.decoder: tshark` in the config).
Flows, mail, DHCP and P2P are the native decoder's: this backend is for cross-checking and for
protocols where Wireshark's dissectors know more. Frames tshark calls malformed are counted and skipped.

Why not pyshark (issue 17): it is no longer a dependency. A prototype with pyshark's `FileCapture(use_ek=True)`
behind `--decoder tshark` (this module's row logic; the same observations on all 23 traces) against today's
`ictwatch decode --decoder tshark --json FILE`, median of 5 fresh runs per file, over the 22 Zeek peer
traces and the school day: 26.2 s today, 37.4 s with pyshark (1.43x; the school day 1.03 s and 1.40 s); the
decoding alone, start-up left out, 6.9 s and 12.6 s (1.82x; the school day 0.28 s and 0.52 s). That is
within 2x only because these captures are tiny and start-up dominates: on a generated 30,000-packet mix
(`tests/bench/bench_decode.write_capture`) 3.1 s and 8.9 s (2.8x), decoding alone 1.9 s and 6.8 s (3.6x),
and about 10x in pyshark's default PDML mode. It brings nothing to set against that: it runs the same tshark
with the same dissectors for the same fields, and adds a second tshark launch per file (`tshark -v`), a
10 MB field map written to the user's cache on first use, three packages (lxml, termcolor, appdirs), and an
EK layer API that failed on QUIC's nested TLS fields and puts mDNS fields under other layer names.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from collector.filetypes import file_ext
from collector.observation import TIME_OUT_OF_RANGE, Emit, Observation, TimeOutOfRange
from collector.packet import tls
from collector.packet.dns import PORTS as DNS_PORTS
from collector.packet.dns import RCODE_NAMES, type_name
from collector.packet.quic import VERSION_NAMES
from collector.skips import SkipCounter

AGG = "\x1f"  # separates the occurrences of a field: a byte no dissected text contains

FIELDS = (
    "frame.number", "frame.time_epoch", "frame.protocols", "_ws.malformed", "eth.src", "vlan.id",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
    "dns.id", "dns.flags.response", "dns.qry.name", "dns.qry.type", "dns.flags.rcode", "dns.count.answers",
    "dns.resp.type", "dns.cname", "dns.a", "dns.aaaa", "dns.ptr.domain_name", "dns.srv.target",
    "dns.sshfp.fingerprint", "dns.rrsig.type_covered", "dns.rrsig.signers_name", "dns.resp.name", "dns.response_to",
    "tls.handshake.type", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version", "tls.handshake.version", "tls.handshake.extension.type",
    "quic.version",
    "http.request.method", "http.host", "http.request.uri", "http.user_agent", "http.response.code",
    "http.request_in", "http.content_type", "http.request.full_uri",
)
FILTER = "dns || mdns || llmnr || tls.handshake.type == 1 || http.request || http.response || _ws.malformed"


class TsharkUnavailable(Exception):
    """tshark is not installed."""


class TsharkCaptureSource:
    """A capture decoded by tshark; `run(emit)` / `stop()` like every source."""

    progress = None  # a `collector.sources.Source` that shows no progress and is not read in batches
    run_batches = None

    def __init__(self, path: Path, tshark: str | None = None) -> None:
        self.path = path
        self.skips = SkipCounter()
        self.packets = 0
        exe = tshark or shutil.which("tshark")
        if exe is None:
            raise TsharkUnavailable("tshark is not installed (Debian package tshark)")
        self._exe = exe
        self._proc: subprocess.Popen[str] | None = None
        self._dns: dict[str, Observation] = {}
        self._http: dict[str, Observation] = {}

    def run(self, emit: Emit) -> None:
        """Stream tshark's rows into observations."""
        cmd = [self._exe, "-n", "-r", str(self.path), "-Y", FILTER, "-T", "fields", "-E", "separator=/t",
               "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
        for name in FIELDS:
            cmd += ["-e", name]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              encoding="utf-8", errors="replace") as proc:
            self._proc = proc
            assert proc.stdout is not None
            for line in proc.stdout:
                row = dict(zip(FIELDS, line.rstrip("\n").split("\t"), strict=False))
                try:
                    self._row(row, emit)
                except TimeOutOfRange:
                    self.skips.skip(TIME_OUT_OF_RANGE, f"{self.path.name}#{row['frame.number']}")
        for obs in (*self._dns.values(), *self._http.values()):
            emit(obs)
        self._dns.clear()
        self._http.clear()

    def stop(self) -> None:
        """Stop tshark."""
        if self._proc is not None:
            self._proc.terminate()

    # -- rows -----------------------------------------------------------------------------------------

    def _row(self, row: dict[str, str], emit: Emit) -> None:
        self.packets = int(row["frame.number"])
        if row.get("_ws.malformed"):
            self.skips.skip("tshark_malformed", f"{self.path.name}#{row['frame.number']}")
            return
        protocols = row["frame.protocols"].split(":")
        if row.get("dns.id") and {"dns", "mdns", "llmnr"} & set(protocols):
            self._dns_row(row, emit)
        elif row.get("tls.handshake.type", "").split(AGG)[0] == "1":
            emit(self._hello(row, "quic" if "quic" in protocols else "tls"))
        elif row.get("http.request.method"):
            obs = self._base(row, "http")
            obs.host = _first(row, "http.host").rsplit(":", 1)[0].lower() if _first(row, "http.host") else None
            obs.method, obs.user_agent = _first(row, "http.request.method"), _first(row, "http.user_agent") or None
            obs.url = _first(row, "http.request.full_uri") or None
            obs.file_ext = file_ext(obs.url, None)
            self._http[row["frame.number"]] = obs
        elif row.get("http.response.code"):
            request = _first(row, "http.request_in")
            asked = self._http.pop(request) if request in self._http else None
            if asked is not None:
                asked.status = int(_first(row, "http.response.code"))
                ctype = _first(row, "http.content_type")
                asked.content_type = ctype.split(";")[0].strip().lower() if ctype else None
                asked.file_ext = file_ext(asked.url, asked.content_type)
                emit(asked)

    def _base(self, row: dict[str, str], kind: str, reverse: bool = False) -> Observation:
        src = row.get("ip.src") or row.get("ipv6.src") or None
        dst = row.get("ip.dst") or row.get("ipv6.dst") or None
        sport = _int(row.get("tcp.srcport") or row.get("udp.srcport"))
        dport = _int(row.get("tcp.dstport") or row.get("udp.dstport"))
        if reverse:
            src, dst, sport, dport = dst, src, dport, sport
        seconds, _, frac = row["frame.time_epoch"].partition(".")
        ts_us = int(seconds) * 1_000_000 + int((frac + "000000")[:6])
        return Observation(
            ts_us, kind, "pcap", f"{self.path.name}#{row['frame.number']}", src, sport, dst, dport,
            "tcp" if row.get("tcp.srcport") else "udp", None if reverse else (row.get("eth.src") or None),
            _int(row["vlan.id"].split(AGG)[-1]) if row.get("vlan.id") else None,  # the innermost tag
        )

    def _hello(self, row: dict[str, str], kind: str) -> Observation:
        obs = self._base(row, kind)
        obs.sni = _first(row, "tls.handshake.extensions_server_name").lower() or None
        obs.host = obs.sni
        obs.alpn = [a for a in row.get("tls.handshake.extensions_alpn_str", "").split(AGG) if a]
        offered = [int(v, 16) for v in row.get("tls.handshake.extensions.supported_version", "").split(AGG) if v]
        offered = [v for v in offered if not (v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF)]
        version = max(offered, key=tls.version_rank) if offered else _int(_first(row, "tls.handshake.version"), 16)
        obs.tls_version = tls.version_name(version) if version else None
        obs.ech = "65037" in row.get("tls.handshake.extension.type", "").split(AGG)
        if kind == "quic":
            obs.quic_version = VERSION_NAMES.get(_int(_first(row, "quic.version"), 16) or 0)
        return obs

    def _dns_row(self, row: dict[str, str], emit: Emit) -> None:
        ports = (_int(row.get("udp.srcport")), _int(row.get("udp.dstport")), _int(row.get("tcp.dstport")))
        service = next((DNS_PORTS[p] for p in ports if p in DNS_PORTS), "dns")
        if row.get("dns.flags.response") in ("0", "False"):
            obs = self._base(row, "dns")
            obs.host = _first(row, "dns.qry.name").lower() or None
            obs.qtype, obs.service = _qtype(row), service
            self._dns[row["frame.number"]] = obs
            return
        query = _first(row, "dns.response_to")
        pending = self._dns.pop(query) if query in self._dns else None
        if pending is not None:
            obs = pending
        else:
            obs = self._base(row, "dns", reverse=True)
            obs.host = (_first(row, "dns.qry.name") or _first(row, "dns.resp.name")).lower() or None
            obs.qtype, obs.service = _qtype(row), service
        rcode = _int(_first(row, "dns.flags.rcode"))
        obs.rcode = RCODE_NAMES.get(rcode or 0, f"RCODE{rcode}")
        obs.answers = _answers(row)
        emit(obs)


def _first(row: dict[str, str], name: str) -> str:
    return row.get(name, "").split(AGG)[0]


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text, base) if text else None
    except ValueError:
        return None


def _qtype(row: dict[str, str]) -> str | None:
    code = _int(_first(row, "dns.qry.type"))
    return type_name(code) if code is not None else None


def _answers(row: dict[str, str]) -> list[str]:
    """The answer section in order, rendered as the native decoder does. tshark lists every record's
    type together (answers first) and each kind of value in a field of its own, so the first
    `count.answers` types say which value comes next."""
    count = _int(_first(row, "dns.count.answers")) or 0
    types = [t for t in row.get("dns.resp.type", "").split(AGG) if t][:count]
    fields = {"1": "dns.a", "28": "dns.aaaa", "5": "dns.cname", "12": "dns.ptr.domain_name", "33": "dns.srv.target",
              "44": "dns.sshfp.fingerprint", "46": "dns.rrsig.type_covered"}
    values = {t: [v for v in row.get(f, "").split(AGG) if v] for t, f in fields.items()}
    signers = [v for v in row.get("dns.rrsig.signers_name", "").split(AGG) if v]
    out = []
    for t in types:
        if not values.get(t):
            continue
        value = values[t].pop(0)
        if t == "44":
            out.append(f"SSHFP: {value}")
        elif t == "46":
            out.append(f"RRSIG {value} {signers.pop(0).lower() if signers else ''}".rstrip())
        else:
            out.append(value.lower())
    return out
