"""The Observation: one thing seen on the wire or in a log, as a row and as columns.

Every source in `collector` produces Observations and nothing else. The field list below is the single
definition of the record: the slotted dataclass (decoder edge, tests), the Arrow schema (batches, polars
frames of it) and the JSON of `ictwatch decode --json` are all derived from it, and
docs/observation-fields.md documents it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from itertools import accumulate, chain
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl

KINDS = ("dns", "tls", "quic", "http", "email", "dhcp", "p2p", "flow", "proxy", "login", "absence")
"""Observation kinds; later issues may add kinds, never rename them."""

_UTC = dt.UTC

EARLIEST_US = 0
"""1970-01-01 00:00:00 UTC in microseconds since the epoch: the first time the store keeps. Its DateTime64
columns hold 1900 to 2299, but retention (a TTL) counts in DateTime, which holds 1970 to 2106-02-07 and
wraps outside it: a row from 1950 would be kept until the 2080s, one from 2106 deleted as it is stored."""
LATEST_US = 4_102_444_799_999_999
"""2099-12-31 23:59:59.999999 UTC: the last time the store keeps, so that six years of retention after it
still fall before 2106 (reports/periods.py has the same range in dates)."""
RANGE = "1970-01-01..2099-12-31 UTC"
TIME_OUT_OF_RANGE = "time_out_of_range"
"""The skip reason of a record (a frame, a log line, a lease) whose time is outside EARLIEST_US..LATEST_US."""


class TimeOutOfRange(ValueError):
    """A record's time the store cannot hold (a clock or a file gone wrong): the record is skipped and counted
    as `TIME_OUT_OF_RANGE`, whichever reader it came from."""


def checked_time(ts_us: int) -> int:
    """`ts_us` itself when the store can hold it; `TimeOutOfRange` otherwise."""
    if not EARLIEST_US <= ts_us <= LATEST_US:
        raise TimeOutOfRange(f"time outside {RANGE}")
    return ts_us


def seconds_to_us(seconds: float) -> int:
    """Microseconds (rounded) of a time in seconds since the epoch as a log writes it; `TimeOutOfRange` for one
    the store cannot hold, infinity included (`float` reads a 400-digit number as that)."""
    if not EARLIEST_US / 1e6 <= seconds <= LATEST_US / 1e6:  # false for NaN too
        raise TimeOutOfRange(f"time outside {RANGE}")
    return checked_time(round(seconds * 1_000_000))


@dataclass(slots=True)
class Observation:
    """One thing seen: a DNS transaction, a TLS hello, an HTTP request, a flow, a proxy log line."""

    ts_us: int
    """Microseconds since the Unix epoch, UTC: capture time of the first packet, or the log line's time."""
    kind: str
    """One of KINDS."""
    source: str
    """The input type: `pcap`, `squid`, `e2guardian`, `squidguard`, `suricata` (EVE JSON), `dhcpd` or
    `dnsmasq` (lease files), `conntrack` (the kernel's flows, line-rate mode); `check` for an absence found
    by a daily check."""
    source_ref: str
    """Where it came from: `file.pcap#N` (1-based frame number, as Wireshark counts) or `file.log:N`; for a
    log `ictwatch run` follows, `file.log@GENERATION:OFFSET` (rotations seen, byte offset after the line)."""
    src_ip: str | None = None
    """Client address (the side that opened the conversation)."""
    src_port: int | None = None
    dst_ip: str | None = None
    """Server address; for proxy lines the upstream server Squid contacted, when it logged an address."""
    dst_port: int | None = None
    proto: str | None = None
    """Transport: `tcp` or `udp`."""
    src_mac: str | None = None
    """Client MAC from the Ethernet header; missing for logs and for link types without MACs."""
    vlan: int | None = None
    """Innermost 802.1Q VLAN id, when tagged."""
    host: str | None = None
    """Best name for the server: DNS query name, TLS SNI, HTTP Host, proxy URL host, or for flows the
    name learnt from SNI/Host on the flow or from an earlier DNS answer for the server address."""
    url: str | None = None
    method: str | None = None
    user_agent: str | None = None
    status: int | None = None
    """HTTP status (from the response on the wire, or Squid's logged status); missing if none was seen."""
    content_type: str | None = None
    service: str | None = None
    """What the conversation is: for `dns` the DNS family member (dns, mdns, llmnr, nbns); for flows the
    protocol recognised on them (dns, ssl, http, ...), as Zeek's conn.log `service`."""
    qtype: str | None = None
    """DNS query type name (A, AAAA, CNAME, ...; TYPEnnn when unknown)."""
    rcode: str | None = None
    """DNS response code name; missing when no response was seen."""
    answers: list[str] = field(default_factory=list)
    """DNS answers in order: addresses for A/AAAA, target names for CNAME/PTR/MX/NS/SRV."""
    file_ext: str | None = None
    """Extension of the file an HTTP request or proxy log line names (`exe`, `msi`, `apk`, ...), lower case:
    from the last segment of the URL's path, or from the content type when it names a program or package
    (collector/filetypes.py gives the rule)."""
    info_hash: str | None = None
    """BitTorrent info-hash (hex) of a `p2p` observation: which torrent."""
    helo: str | None = None
    """SMTP HELO/EHLO name the client gave."""
    mail_from: str | None = None
    """SMTP envelope sender (MAIL FROM), when the dialogue was in clear."""
    rcpt_to: list[str] = field(default_factory=list)
    """SMTP envelope recipients (RCPT TO), in order."""
    starttls: bool | None = None
    """The server accepted the client's STARTTLS/STLS (Zeek's smtp.log `tls`)."""
    mail_encryption: str | None = None
    """How an `email` session was protected: `none` (read in clear: seen from its start, or a command read
    on the wire, and no TLS began), `starttls` (the server accepted STARTTLS/STLS and the client's next bytes
    began a TLS handshake), `implicit_tls` (the client opened with a TLS ClientHello: ports 465, 993, 995, or
    any mail port) or `unknown` (the capture began mid-session with nothing readable, or TLS was accepted but
    not seen to begin)."""
    auth_mechanism: str | None = None
    """How a login crossed in clear: PLAIN, LOGIN, USER/PASS, Basic, ..."""
    auth_user: str | None = None
    """The user name of that login (never the password)."""
    auth_success: bool | None = None
    """Whether the server accepted that login; missing when its answer was not seen."""
    cleartext_credentials: bool = False
    """A password crossed the network readable (clause P2), whatever the server's answer."""
    dhcp_type: str | None = None
    """DHCP message type: v4 DISCOVER, OFFER, REQUEST, ACK...; v6 SOLICIT, ADVERTISE, REQUEST, REPLY..."""
    dhcp_xid: int | None = None
    """DHCP transaction id: the messages of one exchange share it."""
    hostname: str | None = None
    """Host name the DHCP client gave (option 12)."""
    domain: str | None = None
    """Domain name the DHCP server gave (option 15)."""
    requested_ip: str | None = None
    """Address the DHCP client asked for (option 50)."""
    assigned_ip: str | None = None
    """Address the DHCP server offered or acknowledged (yiaddr)."""
    lease_s: int | None = None
    """Lease time in seconds (option 51)."""
    dhcp_params: list[str] = field(default_factory=list)
    """Parameter-request list (option 55), in order: with `vendor_class`, a device fingerprint."""
    vendor_class: str | None = None
    """Vendor class identifier (option 60), e.g. `MSFT 5.0`, `android-dhcp-13`."""
    dhcp_circuit_id: str | None = None
    """DHCP relay agent circuit id (option 82; v6 interface-id, option 18): a Wi-Fi controller's access
    point and SSID, a switch port."""
    dhcp_remote_id: str | None = None
    """DHCP relay agent remote id (option 82; v6 remote-id, option 37)."""
    dhcp_relay_ip: str | None = None
    """The DHCP relay agent's address on the client's link (v4 `giaddr`, v6 the link-address of the
    relay nearest the client): a relayed message is placed by it, not by the server's address."""
    dhcp_client_ip: str | None = None
    """The DHCP client's own address as the message states it: v4 `ciaddr`, v6 the peer-address of the
    relay nearest the client (its source address, usually link-local)."""
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    tls_version: str | None = None
    """Highest version the ClientHello offers (supported_versions when present)."""
    quic_version: str | None = None
    """QUIC version of the Initial packets that carried the hello: `1` or `2`."""
    ech: bool = False
    """The ClientHello carries Encrypted Client Hello: `sni` is then the outer, public name."""
    bytes_out: int | None = None
    """Client-to-server bytes. Flows: IP bytes (IP header included, as Zeek's orig_ip_bytes).
    Proxy: Squid's request size `%>st` where the logformat carries it (a CONNECT's counts all the client sent
    through the tunnel); missing with Squid's native, common and combined formats."""
    bytes_in: int | None = None
    """Server-to-client bytes. Flows: IP bytes (as Zeek's resp_ip_bytes). Proxy: Squid's reply size."""
    packets_out: int | None = None
    packets_in: int | None = None
    conn_state: str | None = None
    """Flows: Zeek's connection state (S0, S1, SF, REJ, RSTO, RSTR, SH, OTH, ...)."""
    interim: bool = False
    """Flows: this record covers a flow still open (reported every 60 s); the counts are those since the
    flow's previous record, so a flow's records add up to its totals."""
    duration_s: float | None = None
    """Flow duration (first to last packet) or Squid's elapsed time."""
    proxy_user: str | None = None
    """User name the proxy authenticated; missing for `-`."""
    proxy_action: str | None = None
    """Squid's result code, e.g. TCP_MISS, TCP_DENIED."""
    denied: bool = False
    """True when the school's filtering refused the request (a blocked attempt): not for the proxy's login
    challenge (407) or an error (collector/logs/refusal.py gives the rule)."""
    filter_category: str | None = None
    """Category a web filter gave the request (e2guardian's category, squidGuard's destination class)."""
    filter_reason: str | None = None
    """The filter's own account of its decision (e2guardian's `*DENIED* Banned site: ...`)."""

    def __init__(
        self, ts_us: int, kind: str, source: str, source_ref: str, src_ip: str | None = None,
        src_port: int | None = None, dst_ip: str | None = None, dst_port: int | None = None, proto: str | None = None,
        src_mac: str | None = None, vlan: int | None = None, host: str | None = None, url: str | None = None,
        method: str | None = None, user_agent: str | None = None, status: int | None = None,
        content_type: str | None = None, service: str | None = None, qtype: str | None = None,
        rcode: str | None = None, answers: list[str] | None = None, file_ext: str | None = None,
        info_hash: str | None = None, helo: str | None = None, mail_from: str | None = None,
        rcpt_to: list[str] | None = None, starttls: bool | None = None, mail_encryption: str | None = None,
        auth_mechanism: str | None = None,
        auth_user: str | None = None, auth_success: bool | None = None, cleartext_credentials: bool = False,
        dhcp_type: str | None = None, dhcp_xid: int | None = None, hostname: str | None = None,
        domain: str | None = None, requested_ip: str | None = None, assigned_ip: str | None = None,
        lease_s: int | None = None, dhcp_params: list[str] | None = None, vendor_class: str | None = None,
        dhcp_circuit_id: str | None = None, dhcp_remote_id: str | None = None, dhcp_relay_ip: str | None = None,
        dhcp_client_ip: str | None = None, sni: str | None = None, alpn: list[str] | None = None,
        tls_version: str | None = None, quic_version: str | None = None, ech: bool = False,
        bytes_out: int | None = None, bytes_in: int | None = None,
        packets_out: int | None = None, packets_in: int | None = None, conn_state: str | None = None,
        interim: bool = False, duration_s: float | None = None, proxy_user: str | None = None,
        proxy_action: str | None = None, denied: bool = False, filter_category: str | None = None,
        filter_reason: str | None = None,
    ) -> None:
        """Written out rather than generated by @dataclass, whose constructor stays interpreted Python
        even in the compiled build: an Observation is made for every DNS packet, hello and flow, and the
        generated constructor took a fifth of the decoder's time. A test checks it against the fields.
        A time the store cannot hold is refused here (`TimeOutOfRange`), whichever reader made it."""
        self.ts_us = checked_time(ts_us)
        self.kind = kind
        self.source = source
        self.source_ref = source_ref
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_ip = dst_ip
        self.dst_port = dst_port
        self.proto = proto
        self.src_mac = src_mac
        self.vlan = vlan
        self.host = host
        self.url = url
        self.method = method
        self.user_agent = user_agent
        self.status = status
        self.content_type = content_type
        self.service = service
        self.qtype = qtype
        self.rcode = rcode
        self.answers = [] if answers is None else answers
        self.file_ext = file_ext
        self.info_hash = info_hash
        self.helo = helo
        self.mail_from = mail_from
        self.rcpt_to = [] if rcpt_to is None else rcpt_to
        self.starttls = starttls
        self.mail_encryption = mail_encryption
        self.auth_mechanism = auth_mechanism
        self.auth_user = auth_user
        self.auth_success = auth_success
        self.cleartext_credentials = cleartext_credentials
        self.dhcp_type = dhcp_type
        self.dhcp_xid = dhcp_xid
        self.hostname = hostname
        self.domain = domain
        self.requested_ip = requested_ip
        self.assigned_ip = assigned_ip
        self.lease_s = lease_s
        self.dhcp_params = [] if dhcp_params is None else dhcp_params
        self.vendor_class = vendor_class
        self.dhcp_circuit_id = dhcp_circuit_id
        self.dhcp_remote_id = dhcp_remote_id
        self.dhcp_relay_ip = dhcp_relay_ip
        self.dhcp_client_ip = dhcp_client_ip
        self.sni = sni
        self.alpn = [] if alpn is None else alpn
        self.tls_version = tls_version
        self.quic_version = quic_version
        self.ech = ech
        self.bytes_out = bytes_out
        self.bytes_in = bytes_in
        self.packets_out = packets_out
        self.packets_in = packets_in
        self.conn_state = conn_state
        self.interim = interim
        self.duration_s = duration_s
        self.proxy_user = proxy_user
        self.proxy_action = proxy_action
        self.denied = denied
        self.filter_category = filter_category
        self.filter_reason = filter_reason

    def append_to(self, columns: list[list[Any]]) -> None:
        """Append each field's value to its column of a batch being built (`columns` in FIELD_NAMES order).
        Written out, like the constructor: compiled, each line reads its field directly, where a loop over
        the field names with `getattr` took 5.5 µs a row (0.27 s of the 300k mix's replay). A test checks it
        against the fields."""
        columns[0].append(self.ts_us)
        columns[1].append(self.kind)
        columns[2].append(self.source)
        columns[3].append(self.source_ref)
        columns[4].append(self.src_ip)
        columns[5].append(self.src_port)
        columns[6].append(self.dst_ip)
        columns[7].append(self.dst_port)
        columns[8].append(self.proto)
        columns[9].append(self.src_mac)
        columns[10].append(self.vlan)
        columns[11].append(self.host)
        columns[12].append(self.url)
        columns[13].append(self.method)
        columns[14].append(self.user_agent)
        columns[15].append(self.status)
        columns[16].append(self.content_type)
        columns[17].append(self.service)
        columns[18].append(self.qtype)
        columns[19].append(self.rcode)
        columns[20].append(self.answers)
        columns[21].append(self.file_ext)
        columns[22].append(self.info_hash)
        columns[23].append(self.helo)
        columns[24].append(self.mail_from)
        columns[25].append(self.rcpt_to)
        columns[26].append(self.starttls)
        columns[27].append(self.mail_encryption)
        columns[28].append(self.auth_mechanism)
        columns[29].append(self.auth_user)
        columns[30].append(self.auth_success)
        columns[31].append(self.cleartext_credentials)
        columns[32].append(self.dhcp_type)
        columns[33].append(self.dhcp_xid)
        columns[34].append(self.hostname)
        columns[35].append(self.domain)
        columns[36].append(self.requested_ip)
        columns[37].append(self.assigned_ip)
        columns[38].append(self.lease_s)
        columns[39].append(self.dhcp_params)
        columns[40].append(self.vendor_class)
        columns[41].append(self.dhcp_circuit_id)
        columns[42].append(self.dhcp_remote_id)
        columns[43].append(self.dhcp_relay_ip)
        columns[44].append(self.dhcp_client_ip)
        columns[45].append(self.sni)
        columns[46].append(self.alpn)
        columns[47].append(self.tls_version)
        columns[48].append(self.quic_version)
        columns[49].append(self.ech)
        columns[50].append(self.bytes_out)
        columns[51].append(self.bytes_in)
        columns[52].append(self.packets_out)
        columns[53].append(self.packets_in)
        columns[54].append(self.conn_state)
        columns[55].append(self.interim)
        columns[56].append(self.duration_s)
        columns[57].append(self.proxy_user)
        columns[58].append(self.proxy_action)
        columns[59].append(self.denied)
        columns[60].append(self.filter_category)
        columns[61].append(self.filter_reason)

    @property
    def ts(self) -> dt.datetime:
        """Timestamp as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.ts_us / 1e6, _UTC)

    def to_json_dict(self) -> dict[str, Any]:
        """The `decode --json` object: ISO 8601 UTC `ts`, every field, None for missing."""
        out: dict[str, Any] = {"ts": self.ts.isoformat().replace("+00:00", "Z")}
        for name in FIELD_NAMES:
            if name != "ts_us":
                out[name] = getattr(self, name)
        return out


Emit = Callable[[Observation], None]
"""Where a source hands each observation it reads."""


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Observation))

_STR = pa.string()
_ARROW_TYPES: dict[str, pa.DataType] = {
    "ts_us": pa.timestamp("us", tz="UTC"),
    "src_port": pa.uint16(),
    "dst_port": pa.uint16(),
    "vlan": pa.uint16(),
    "status": pa.uint16(),
    "answers": pa.list_(_STR),
    "alpn": pa.list_(_STR),
    "bytes_out": pa.uint64(),
    "bytes_in": pa.uint64(),
    "packets_out": pa.uint64(),
    "packets_in": pa.uint64(),
    "duration_s": pa.float64(),
    "denied": pa.bool_(),
    "ech": pa.bool_(),
    "interim": pa.bool_(),
    "dhcp_xid": pa.uint32(),
    "rcpt_to": pa.list_(_STR),
    "starttls": pa.bool_(),
    "auth_success": pa.bool_(),
    "cleartext_credentials": pa.bool_(),
    "lease_s": pa.uint32(),
    "dhcp_params": pa.list_(_STR),
}

OBSERVATION_SCHEMA = pa.schema(
    [pa.field("ts" if n == "ts_us" else n, _ARROW_TYPES.get(n, _STR)) for n in FIELD_NAMES]
)
"""Arrow schema of an observation batch. The time column is named `ts`."""

_COUNTS: tuple[tuple[str, int], ...] = tuple(
    (n, (1 << t.bit_width) - 1) for n, t in _ARROW_TYPES.items() if pa.types.is_unsigned_integer(t))
"""Each whole-number field of an observation and the largest value its column holds (none holds one below 0)."""


def fits(obs: Observation) -> Observation:
    """`obs` itself when each of its whole numbers fits its column; `ValueError` naming the field otherwise (a
    log line's size of 10^20 or -5, a status of 99999), so that the line is refused and counted like any
    other bad line rather than failing its whole batch."""
    for name, largest in _COUNTS:
        value = getattr(obs, name)
        if value is not None and not 0 <= value <= largest:
            raise ValueError(f"{name} out of range")
    return obs

class BatchBuilder:
    """Collects Observations and hands them on as polars frames (`to_frame`): at `max_rows` rows or when the
    oldest pending row is `max_age_s` old, whichever comes first.

    `add` appends to per-column lists. The age is checked on `add` (every 64th row, to keep the clock
    off the hot path) and on `tick`, which a live source calls when input is quiet. `flush` sends
    whatever is pending (end of input). `now` is the clock, injectable for tests.
    """

    def __init__(
        self, sink: Callable[[pl.DataFrame], None], max_rows: int = 65536, max_age_s: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._max_rows = max_rows
        self._max_age = max_age_s
        self._now = now
        self._columns: list[list[Any]] = [[] for _ in FIELD_NAMES]
        self._first_at = 0.0
        self.rows_emitted = 0

    def add(self, obs: Observation) -> None:
        """Append one observation; emits a batch when full or old enough."""
        pending = len(self._columns[0])
        if pending == 0:
            self._first_at = self._now()
        obs.append_to(self._columns)
        if pending + 1 >= self._max_rows or (pending & 63 == 63 and self._too_old()):
            self.flush()

    def tick(self) -> None:
        """Emit the pending rows if the oldest has waited `max_age_s`."""
        if self._columns[0] and self._too_old():
            self.flush()

    def _too_old(self) -> bool:
        return self._now() - self._first_at >= self._max_age

    def flush(self) -> None:
        """Emit pending rows, if any, as one frame."""
        if not self._columns[0]:
            return
        frame = to_frame(self._columns)
        self._columns = [[] for _ in FIELD_NAMES]
        self.rows_emitted += frame.height
        self._sink(frame)


def to_frame(columns: list[list[Any]]) -> pl.DataFrame:
    """An observation batch from per-field value lists (in FIELD_NAMES order), with the types polars reads
    OBSERVATION_SCHEMA as. Polars builds each column from its list (pyarrow's conversion of Python values
    would import pandas, 0.2 s, on the first batch); a list column is built from its values laid end to end
    and their offsets, as polars builds a list of lists one item at a time (about 8 µs a row)."""
    import polars as pl  # here, not at the top: the decoder alone does without it

    series = []
    types = pl.Schema(OBSERVATION_SCHEMA).values()
    for name, values, dtype in zip(FIELD_NAMES, columns, types, strict=True):
        if name == "ts_us":
            series.append(pl.Series("ts", values, dtype=pl.Int64).cast(dtype))
        elif isinstance(dtype, pl.List):
            series.append(_texts_column(name, values))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(series)


def _texts_column(name: str, values: list[list[str]]) -> pl.Series:
    """A list-of-texts column: most rows of a batch have none (answers are DNS's, ALPN TLS's)."""
    import numpy as np
    import polars as pl

    if not any(values):
        return pl.Series(name, [[]], dtype=pl.List(pl.String)).new_from_index(0, len(values))
    offsets = np.fromiter(accumulate(map(len, values), initial=0), dtype=np.int64, count=len(values) + 1)
    flat = pl.Series(list(chain.from_iterable(values)), dtype=pl.String).to_arrow()
    lists = pa.LargeListArray.from_arrays(
        pa.Array.from_buffers(pa.int64(), offsets.size, [None, pa.py_buffer(offsets)]), flat)
    return pl.Series(name, lists)


def to_table(observations: Iterable[Observation]) -> pa.Table:
    """A batch from a handful of observations (tests, `explain`, live logs' lines) as an Arrow table of
    OBSERVATION_SCHEMA: a batch of one is still a batch."""
    columns: list[list[Any]] = [[] for _ in FIELD_NAMES]
    for obs in observations:
        obs.append_to(columns)
    return to_frame(columns).to_arrow().cast(OBSERVATION_SCHEMA)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a `decode --json` object, derived from the Arrow schema."""
    def of(t: pa.DataType) -> dict[str, Any]:
        if pa.types.is_timestamp(t):
            return {"type": "string", "format": "date-time"}
        if pa.types.is_list(t):
            return {"type": "array", "items": of(t.value_type)}
        if pa.types.is_boolean(t):
            return {"type": ["boolean", "null"]}
        if pa.types.is_integer(t):
            return {"type": ["integer", "null"]}
        if pa.types.is_floating(t):
            return {"type": ["number", "null"]}
        return {"type": ["string", "null"]}

    props = {f.name: of(f.type) for f in OBSERVATION_SCHEMA}
    props["kind"] = {"enum": list(KINDS)}
    props["ts"] = {"type": "string", "format": "date-time"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ictwatch observation",
        "description": "One object of `ictwatch decode --json`; fields are documented in docs/observation-fields.md.",
        "type": "object",
        "required": ["ts", "kind", "source", "source_ref"],
        "properties": props,
        "additionalProperties": False,
    }
