"""Suricata's EVE JSON as an input: Suricata decodes the packets, ictwatch applies the policy.

`EveSource` reads an eve.json file (one JSON object per line) and turns dns, tls, quic, http, smtp,
dhcp, bittorrent_dht and flow events into the Observations the native decoder makes for the same traffic, so a gateway
whose traffic outgrows one Python core can put Suricata in front. Differences that follow from what
Suricata logs are part of the contract and tested against the native decoder:

- flows: Suricata counts whole frames; ictwatch stores IP bytes, so 14 bytes (Ethernet) plus 4 per VLAN
  tag are taken off each packet. Suricata's flow state is not Zeek's, so `conn_state` stays empty;
- TLS: Suricata writes a `tls` event once the handshake got far enough, and gives the negotiated
  version, not the highest offered; ALPN and ECH are not in its event;
- mail: an `smtp` event is an `email` observation whose `mail_encryption` is `none` when it carries an
  envelope (Suricata read it in clear) and `unknown` otherwise: a STARTTLS shows only as a later `tls`
  event (`from_proto` smtp), which is not joined to it, and implicit TLS makes no `email` observation;
- DHT: Suricata logs each message from its sender; ictwatch, from the node that asked (a response or
  error from its receiver), as the native decoder does. Suricata reads every message of a flow, where the
  native decoder stops at 32;
- `fileinfo` events add nothing the http event's URL and content type do not already give (the file's
  type, collector/filetypes.py), and are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from collector.filetypes import file_ext
from collector.logs.lines import is_blank, lines, open_unzipped
from collector.observation import Emit, Observation, fits
from collector.packet.p2p import DHT_QUERIES
from collector.skips import SkipCounter

BAD_EVE_RECORD = "bad_eve_record"
"""The skip reason of a line that is not an EVE event this reader can use."""
_NAMES_KEPT = 200_000
_TLS_VERSIONS = {"TLS 1.3": "TLSv13", "TLS 1.2": "TLSv12", "TLS 1.1": "TLSv11", "TLS 1.0": "TLSv10",
                 "TLSv1": "TLSv10", "SSLv3": "SSLv3"}


def _json(line: str) -> Any:
    """The JSON value of a line; `ValueError` for one that is not JSON, or nests too deep for the parser (a
    line of 60,000 `[` is one)."""
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def looks_like_eve(line: str) -> bool:
    """True for a line that is a Suricata EVE record."""
    if not line.startswith("{"):
        return False
    try:
        record = _json(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "event_type" in record and "timestamp" in record


class EveSource:
    """An eve.json file read line by line; `run(emit)` / `stop()` like every source."""

    progress = None  # a `collector.sources.Source` that shows no progress and is not read in batches
    run_batches = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skips = SkipCounter()
        self.packets = 0
        self._stopped = False
        self._queries: dict[tuple[Any, Any], Observation] = {}
        self._flow_names: dict[Any, str] = {}  # flow_id → the name its TLS, QUIC or HTTP event gave
        self._address_names: dict[str, str] = {}  # address → the name a DNS answer gave it

    def run(self, emit: Emit) -> None:
        """Emit observations for every event this version understands; count and skip bad lines (and lines
        over `lines.MAX_LINE`). A gzipped eve.json is read through gzip."""
        name = self.path.name
        stream, _raw = open_unzipped(self.path)
        with stream:
            for number, line in lines(stream, lambda reason, n: self.skips.skip(reason, f"{name}:{n}")):
                if self._stopped:
                    break
                if is_blank(line):
                    continue
                ref = f"{name}:{number}"
                try:
                    self._event(_json(line.decode("utf-8", "replace")), ref, lambda obs: emit(fits(obs)))
                except ValueError as exc:
                    self.skips.refused(exc, BAD_EVE_RECORD, ref)
                except (KeyError, TypeError, AttributeError):
                    self.skips.skip(BAD_EVE_RECORD, ref)
        for obs in self._queries.values():  # queries no answer followed
            try:
                emit(fits(obs))
            except ValueError as exc:
                self.skips.refused(exc, BAD_EVE_RECORD, obs.source_ref)
        self._queries.clear()

    def stop(self) -> None:
        """Stop before the next line."""
        self._stopped = True

    def parse_line(self, line: str, ref: str) -> list[Observation]:
        """The observations of one eve.json line as it is written (a followed log); ValueError when it
        is not an event. A DNS query waits for its answer, as in `run`."""
        found: list[Observation] = []
        try:
            self._event(_json(line), ref, found.append)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an EVE event ({type(exc).__name__})") from None
        return found

    def _event(self, e: dict[str, Any], ref: str, emit: Emit) -> None:
        kind = e["event_type"]
        if len(self._flow_names) > _NAMES_KEPT or len(self._address_names) > _NAMES_KEPT:
            self._flow_names.clear()  # bounded, as the native decoder's name cache is
            self._address_names.clear()
        if kind == "dns":
            self._dns(e, ref, emit)
        elif kind == "tls" or (kind == "quic" and e.get("quic", {}).get("sni")):
            hello = self._hello(e, ref, kind)  # a quic record without a name is the server's side: no news
            self._name_flow(e, hello.host)
            emit(hello)
        elif kind == "http":
            request = self._http(e, ref)
            self._name_flow(e, request.host)
            emit(request)
        elif kind == "smtp":
            obs = self._base(e, ref, "email")
            smtp = e.get("smtp", {})
            obs.service, obs.helo = "smtp", smtp.get("helo")
            obs.mail_from = _unbracket(smtp.get("mail_from"))
            obs.rcpt_to = [_unbracket(r) or "" for r in smtp.get("rcpt_to", [])]
            # an envelope Suricata read crossed in clear; its STARTTLS shows only in a later `tls` event
            obs.mail_encryption = "none" if obs.mail_from or obs.rcpt_to else "unknown"
            emit(obs)
        elif kind == "dhcp":
            emit(self._dhcp(e, ref))
        elif kind == "bittorrent_dht":
            emit(self._dht(e, ref))
        elif kind == "flow":
            emit(self._flow(e, ref))

    def _base(self, e: dict[str, Any], ref: str, kind: str, ts: str | None = None) -> Observation:
        when = dt.datetime.strptime(ts or e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
        ether = e.get("ether", {})
        mac = ether.get("src_mac") or (ether.get("src_macs") or [None])[0]
        vlans = e.get("vlan") or []
        return Observation(
            int(when.timestamp() * 1_000_000), kind, "suricata", ref, e.get("src_ip"), e.get("src_port"),
            e.get("dest_ip"), e.get("dest_port"), str(e.get("proto", "")).lower() or None, mac,
            vlans[-1] if vlans else None,
        )

    def _dns(self, e: dict[str, Any], ref: str, emit: Emit) -> None:
        d = e["dns"]
        key = (e.get("flow_id"), d.get("id"))
        if d.get("type") == "query":
            obs = self._base(e, ref, "dns")
            obs.host, obs.qtype, obs.service = (d.get("rrname") or "").lower() or None, d.get("rrtype"), "dns"
            if key in self._queries:
                emit(self._queries.pop(key))
            self._queries[key] = obs
            return
        pair = self._queries.pop(key, None)
        if pair is None:  # an answer whose query was not logged: the receiver is the client
            pair = self._base(e, ref, "dns")
            pair.src_ip, pair.src_port, pair.dst_ip, pair.dst_port = (
                pair.dst_ip, pair.dst_port, pair.src_ip, pair.src_port)
            pair.host, pair.qtype, pair.service = (d.get("rrname") or "").lower() or None, d.get("rrtype"), "dns"
        pair.rcode = d.get("rcode")
        pair.answers = [str(a.get("rdata", "")).lower() for a in d.get("answers", []) if "rdata" in a]
        for answer in d.get("answers", []):
            if answer.get("rrtype") in ("A", "AAAA") and answer.get("rdata") and pair.host:
                self._address_names[str(answer["rdata"]).lower()] = pair.host
        emit(pair)

    def _dht(self, e: dict[str, Any], ref: str) -> Observation:
        """A DHT message: a query by its `request_type` (with the info-hash of its request), else a response
        or an error, which goes from the node it answers (its receiver, `dest_ip`, whose MAC is `dest_mac`)."""
        obs = self._base(e, ref, "p2p")
        dht = e["bittorrent_dht"]
        method = dht.get("request_type")
        if method:
            info_hash = str((dht.get("request") or {}).get("info_hash") or "")
            obs.method = method if method in DHT_QUERIES else "query"
            obs.info_hash = info_hash if len(info_hash) == 40 and all(c in "0123456789abcdef" for c in info_hash) \
                else None
        else:
            obs.method = "error" if "error" in dht else "response"
            obs.src_ip, obs.src_port, obs.dst_ip, obs.dst_port = obs.dst_ip, obs.dst_port, obs.src_ip, obs.src_port
            obs.src_mac = e.get("ether", {}).get("dest_mac")
        obs.service = "dht"
        return obs

    def _name_flow(self, e: dict[str, Any], name: str | None) -> None:
        if name and e.get("flow_id") is not None:
            self._flow_names[e["flow_id"]] = name

    def _hello(self, e: dict[str, Any], ref: str, kind: str) -> Observation:
        obs = self._base(e, ref, kind)
        body = e.get(kind, {})
        obs.sni = (body.get("sni") or "").lower() or None
        obs.host = obs.sni
        if kind == "tls":
            obs.tls_version = _TLS_VERSIONS.get(body.get("version", ""), body.get("version"))
        else:
            obs.quic_version = body.get("version")
            for ext in body.get("extensions", []):
                if ext.get("type") == 16:  # ALPN
                    obs.alpn = [str(v) for v in ext.get("values", [])]
        return obs

    def _http(self, e: dict[str, Any], ref: str) -> Observation:
        obs = self._base(e, ref, "http")
        h = e["http"]
        host = (h.get("hostname") or "").lower() or None
        url = h.get("url") or ""
        obs.host, obs.method, obs.user_agent = host, h.get("http_method"), h.get("http_user_agent")
        obs.url = url if "://" in url else f"http://{host or ''}{url}"
        obs.status = h.get("status")
        ctype = h.get("http_content_type")
        obs.content_type = ctype.split(";")[0].strip().lower() if ctype else None
        obs.file_ext = file_ext(obs.url, obs.content_type)
        return obs

    def _dhcp(self, e: dict[str, Any], ref: str) -> Observation:
        obs = self._base(e, ref, "dhcp")
        d = e["dhcp"]
        obs.dhcp_type, obs.dhcp_xid = (d.get("dhcp_type") or "").upper() or None, d.get("id")
        obs.src_mac, obs.hostname, obs.host = d.get("client_mac"), d.get("hostname"), d.get("hostname")
        obs.requested_ip, obs.lease_s = d.get("requested_ip"), d.get("lease_time")
        obs.assigned_ip, obs.dhcp_client_ip, obs.dhcp_relay_ip = (
            None if d.get(k) in (None, "0.0.0.0") else d.get(k) for k in ("assigned_ip", "client_ip", "relay_ip"))
        obs.vendor_class, obs.service = d.get("vendor_class_identifier"), "dhcp"
        obs.dhcp_params = [str(p) for p in d.get("params", [])]
        return obs

    def _flow(self, e: dict[str, Any], ref: str) -> Observation:
        f = e["flow"]
        obs = self._base(e, ref, "flow", ts=f["start"])
        link = 14 + 4 * len(e.get("vlan") or [])  # Suricata counts frames; ictwatch stores IP bytes
        obs.packets_out, obs.packets_in = f["pkts_toserver"], f["pkts_toclient"]
        obs.bytes_out = f["bytes_toserver"] - link * f["pkts_toserver"]
        obs.bytes_in = f["bytes_toclient"] - link * f["pkts_toclient"]
        start = dt.datetime.strptime(f["start"], "%Y-%m-%dT%H:%M:%S.%f%z")
        end = dt.datetime.strptime(f["end"], "%Y-%m-%dT%H:%M:%S.%f%z")
        obs.duration_s = (end - start).total_seconds()
        obs.service = e.get("app_proto") if e.get("app_proto") not in (None, "failed") else None
        # named as the native decoder names flows: the connection's own TLS or HTTP name, else DNS's
        obs.host = self._flow_names.pop(e.get("flow_id"), None) or self._address_names.get(str(obs.dst_ip))
        self.packets += f["pkts_toserver"] + f["pkts_toclient"]
        return obs


def _unbracket(addr: str | None) -> str | None:
    if not addr:
        return None
    addr = addr.strip()
    return addr[1:-1] if addr.startswith("<") and addr.endswith(">") else addr
