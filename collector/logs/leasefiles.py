"""DHCP servers' lease files as identity evidence: ISC dhcpd (`dhcpd.leases`) and dnsmasq (`dnsmasq.leases`).

Each lease becomes a `dhcp` observation of type ACK (address, MAC, host name, start, length), the same
shape a DHCP ACK seen on the wire gives, so it joins the same lease history. Pure parsers: text in,
observations out; a malformed lease raises `ValueError` naming the field, and the source counts it.

- ISC dhcpd: `lease ADDR { starts W YYYY/MM/DD HH:MM:SS; ends ...; hardware ethernet MAC;
  client-hostname "NAME"; ... }` blocks, times in UTC (dhcpd's default `db-time-format`). Free or
  released leases (`binding state free`) are not evidence of anyone holding the address and are skipped.
- dnsmasq: `EXPIRY MAC ADDR NAME CLIENT-ID` per line; the file gives the expiry only, so the start is the
  expiry less dnsmasq's default lease length (`DNSMASQ_LEASE_S`, one hour).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from collector.logs.lines import MAX_LINE, is_blank, lines, open_unzipped
from collector.observation import Observation, checked_time
from collector.skips import SkipCounter

BAD_LEASE = "bad_lease"
"""The skip reason of a lease record that cannot be read."""
_UTC = dt.UTC
_BLOCK = re.compile(r"lease\s+(\S+)\s*\{(.*?)\}", re.S)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_DHCPD_START = re.compile(r"\s*(?:lease\s+\S+\s*\{|authoring-byte-order\s|server-duid\s)")
DNSMASQ_LEASE_S = 3600


def _isc_time(value: str) -> dt.datetime:
    parts = value.split()
    if len(parts) != 3:
        raise ValueError(f"bad lease time: {value!r}")
    return dt.datetime.strptime(f"{parts[1]} {parts[2]}", "%Y/%m/%d %H:%M:%S").replace(tzinfo=_UTC)


def isc_lease(ip: str, body: str, ref: str) -> Observation | None:
    """One `lease ADDR { ... }` record; None for a lease nobody holds (free, released)."""
    fields: dict[str, str] = {}
    for statement in body.split(";"):
        words = statement.strip().split(None, 1)
        if len(words) == 2:
            key = f"{words[0]} {words[1].split()[0]}" if words[0] in ("hardware", "binding") else words[0]
            fields.setdefault(key, words[1])
    state = fields.get("binding state", "")
    if "free" in state or "released" in state or "abandoned" in state:
        return None
    mac = fields.get("hardware ethernet", "").split()[-1].lower() if "hardware ethernet" in fields else ""
    if not _MAC.match(mac):
        raise ValueError(f"{ref}: bad hardware ethernet: {mac[:30]!r}")
    if "starts" not in fields or "ends" not in fields:
        raise ValueError(f"{ref}: no starts/ends")
    host = fields.get("client-hostname", "").strip('"') or None
    return _ack(_isc_time(fields["starts"]), _isc_time(fields["ends"]), ip, mac, host, ref, "dhcpd")


def dnsmasq_lease(line: str, ref: str) -> Observation:
    """One line of a dnsmasq.leases file."""
    parts = line.split()
    if len(parts) < 4 or not parts[0].isdigit():
        raise ValueError(f"bad dnsmasq lease line: {line[:60]!r}")
    mac = parts[1].lower()
    if not _MAC.match(mac):
        raise ValueError(f"bad MAC: {mac[:30]!r}")
    end = dt.datetime.fromtimestamp(checked_time(int(parts[0]) * 1_000_000) // 1_000_000, _UTC)
    host = None if parts[3] == "*" else parts[3]
    return _ack(end - dt.timedelta(seconds=DNSMASQ_LEASE_S), end, parts[2], mac, host, ref, "dnsmasq")


def _ack(start: dt.datetime, end: dt.datetime, ip: str, mac: str, host: str | None, ref: str,
         source: str) -> Observation:
    return Observation(
        int(start.timestamp() * 1_000_000), "dhcp", source, ref, None, None, ip, None, "udp", mac,
        host=host, hostname=host, dhcp_type="ACK", assigned_ip=ip, lease_s=int((end - start).total_seconds()),
        service="dhcp",
    )


def starts_dhcpd_record(line: str) -> bool:
    """Whether `line` is one that starts a record of dhcpd's lease file (`lease ADDR {`, or its header's
    `authoring-byte-order` or `server-duid`)."""
    return _DHCPD_START.match(line) is not None


def looks_like_dnsmasq(line: str) -> bool:
    """Whether `line` is laid out as a line of dnsmasq's lease file: an expiry, a MAC address and two more."""
    words = line.split()
    return len(words) >= 4 and words[0].isdigit() and _MAC.match(words[1].lower()) is not None


class _Records:
    """dhcpd's records gathered a line at a time: from a line that starts `lease ` to the one that holds its
    closing brace, at most `lines.MAX_LINE` bytes in all."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._size = 0

    def add(self, line: str) -> str | None:
        """The text of the record `line` ends; None while none ends. `ValueError` for a record that grew
        past `MAX_LINE` without its brace (it is dropped; the next `lease ` line starts afresh)."""
        if line.lstrip().startswith("lease "):
            self._lines, self._size = [], 0
        elif not self._lines:
            return None
        self._lines.append(line)
        self._size += len(line) + 1
        if "}" in line:
            text, self._lines = "\n".join(self._lines), []
            return text
        if self._size > MAX_LINE:
            self._lines = []
            raise ValueError("a lease record longer than lines.MAX_LINE without its closing brace")
        return None


class LeaseFileSource:
    """A dhcpd or dnsmasq lease file; `run(emit)` / `stop()` like every source."""

    packets = 0  # a `collector.sources.Source` with no packets, no progress shown and no batches
    progress = None
    run_batches = None

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.skips = SkipCounter()

    def run(self, emit: Callable[[Observation], None]) -> None:
        """Emit one ACK observation per held lease; count and skip malformed ones. dhcpd appends a new
        record each time a lease changes; every record is kept, since each is evidence for its own period.
        Read a line at a time (`collector.logs.lines`), gzip unwrapped: a line over `lines.MAX_LINE`, or a
        dhcpd record without its closing brace within as many bytes, is skipped and counted."""
        name = self.path.name
        stream, _raw = open_unzipped(self.path)
        with stream:
            numbered = lines(stream, lambda reason, n: self.skips.skip(reason, f"{name}:{n}"))
            if self.kind == "dhcpd":
                self._dhcpd(((number, raw.decode("utf-8", "replace")) for number, raw in numbered), emit)
                return
            for number, raw in numbered:
                if not is_blank(raw) and not raw.startswith(b"#"):
                    try:
                        emit(dnsmasq_lease(raw.decode("utf-8", "replace"), f"{name}:{number}"))
                    except ValueError as exc:
                        self.skips.refused(exc, BAD_LEASE, f"{name}:{number}")

    def _dhcpd(self, numbered: Iterable[tuple[int, str]], emit: Callable[[Observation], None]) -> None:
        """dhcpd's records, numbered `#leaseN` in the order they are written."""
        records, count = _Records(), 0
        for _number, line in numbered:
            try:
                text = records.add(line)
            except ValueError as exc:
                count += 1
                self.skips.refused(exc, BAD_LEASE, f"{self.path.name}#lease{count}")
                continue
            for match in _BLOCK.finditer(text or ""):
                count += 1
                ref = f"{self.path.name}#lease{count}"
                try:
                    obs = isc_lease(match.group(1), match.group(2), ref)
                except ValueError as exc:
                    self.skips.refused(exc, BAD_LEASE, ref)
                    continue
                if obs is not None:
                    emit(obs)

    def stop(self) -> None:
        """Lease files are read whole; nothing to stop."""


def lease_follower(kind: str) -> Callable[[str, str], list[Observation]]:
    """A parser for following a lease file line by line as the DHCP server writes it (`dhcpd`: records
    of several lines, gathered until their closing brace; `dnsmasq`: a line each). A lease seen before
    is not handed out again: dnsmasq rewrites its whole file at each change, and dhcpd rewrites its own
    from time to time."""
    seen: set[tuple[str | None, str | None, int]] = set()
    records = _Records()

    def fresh(found: list[Observation]) -> list[Observation]:
        new = [o for o in found if (o.assigned_ip, o.src_mac, o.ts_us) not in seen]
        seen.update((o.assigned_ip, o.src_mac, o.ts_us) for o in new)
        return new

    def dnsmasq(line: str, ref: str) -> list[Observation]:
        return fresh([dnsmasq_lease(line, ref)]) if line.strip() else []

    def dhcpd(line: str, ref: str) -> list[Observation]:
        text = records.add(line)
        if text is None:
            return []
        found = [obs for m in _BLOCK.finditer(text) if (obs := isc_lease(m.group(1), m.group(2), ref)) is not None]
        return fresh(found)

    return dhcpd if kind == "dhcpd" else dnsmasq
