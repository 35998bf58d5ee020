"""The collector's settings, composed into the root configuration by `ictwatch.settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.logs import formats
from collector.logs.squid_logformat import LogFormat


class FollowedLog(BaseModel):
    """A log `ictwatch run` follows as it is written (like `tail -F`, across rotations)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Path = Field(description="The log, e.g. /var/log/squid/access.log.")
    format: str = Field(description="Its format, one of " + "; ".join(
        f"{fmt.name}: {fmt.summary}" for fmt in formats.FORMATS if fmt.followable) + " (docs/log-formats.md).")

    @field_validator("format")
    @classmethod
    def _followable(cls, name: str) -> str:
        formats.followed(name)  # a ValueError names the formats that can be followed
        return name


class CollectorSettings(BaseModel):
    """How captures are decoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decoder: Literal["native", "tshark"] = Field(
        "native",
        description="native: ictwatch's own decoder (every kind, flows included). tshark: Wireshark's "
        "dissectors for DNS, TLS, QUIC and HTTP (no flows, mail, DHCP or P2P); needs the tshark package.",
    )
    interface: str | None = Field(None, description="Interface `ictwatch run` captures on (the LAN side).")
    capture_filter: str | None = Field(None, description="BPF filter for the capture, e.g. `not port 22`.")
    capture_tool: Literal["auto", "afpacket", "dumpcap", "tcpdump", "scapy", "pipe"] = Field(
        "auto", description="auto: afpacket when the daemon holds CAP_NET_RAW, else dumpcap, else tcpdump, "
        "else scapy's in-process sniffer (needs root). afpacket: the capture worker reads the kernel's "
        "memory-mapped packet ring itself, with no capture tool (needs CAP_NET_RAW; the fastest). pipe: "
        "read `capture_pipe`, a FIFO that a capture service of its own writes pcap or pcapng into (the "
        "hardened systemd layout: deploy/systemd/)."
    )
    capture_pipe: Path | None = Field(None, description="The FIFO `capture_tool: pipe` reads.")
    capture_buffer_mb: int | None = Field(None, ge=1, le=4096, description=(
        "The kernel buffer, in MB, dumpcap or tcpdump asks for (`-B`); their default is 2 MB. A larger one "
        "(32–64) rides out the moments the capture worker is slowed, at the cost of that much memory. For "
        "afpacket, the ring's size (default 32)."))
    follow: tuple[FollowedLog, ...] = Field((), description="Proxy and web-filter logs `ictwatch run` follows.")
    flow_source: Literal["suricata", "conntrack"] = Field("suricata", description=(
        "Where line-rate mode takes flows from: a followed suricata-eve log, or the kernel's connection "
        "tracking (`conntrack -E`, on a gateway that routes the traffic, with nf_conntrack_acct on)."))
    line_rate: bool = Field(False, description=(
        "Capture only the packets that carry names and policy signals (collector/capture/linerate.py) and take "
        "flows from Suricata's flow events (a followed suricata-eve log) instead of counting every packet."))
    log_timezone: str = Field(
        "Europe/London", description="IANA zone of the local times in e2guardian and squidGuard logs (the "
        "gateway's clock); Squid's own formats carry epoch seconds or an offset and need none.",
    )
    squid_logformat: str | None = Field(
        None, description="The SPEC of squid.conf's `logformat` line for an access log written in a custom "
        "format (e.g. `%ts.%03tu %>a %un %rm %ru %>Hs %<st %Ss \"%{User-Agent}>h\"`), or a built-in name.",
    )

    @field_validator("log_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @field_validator("squid_logformat")
    @classmethod
    def _usable_logformat(cls, spec: str | None) -> str | None:
        if spec is not None:
            LogFormat(spec)  # a LogFormatError (a ValueError) names what is missing
        return spec

    def problems(self) -> list[tuple[str, object, str]]:
        """Cross-references a field validator cannot see: (field, value, problem) for each."""
        return [(f"follow[{i}].format", log.format, "needs collector.squid_logformat, the SPEC of the logformat "
                 "line in squid.conf") for i, log in enumerate(self.follow)
                if log.format == "squid-logformat" and self.squid_logformat is None]

    def without_request_sizes(self) -> list[tuple[str, str]]:
        """(field, warning) for the custom logformat if it has no `%>st`, and for each followed Squid log in a
        built-in format: their records carry no request size, so no upload through the proxy is seen."""
        unseen = "no upload through the proxy is seen (bytes_out_min never holds for it)"
        out = []
        if self.squid_logformat is not None and not LogFormat(self.squid_logformat).request_sizes:
            out.append(("squid_logformat", f"collector.squid_logformat has no %>st, so the proxy log carries no "
                        f"request sizes and {unseen}: add %>st, as the logformat in docs/log-formats.md does"))
        for i, log in enumerate(self.follow):
            what = _NO_REQUEST_SIZES.get(log.format)
            if what is not None:
                out.append((f"follow[{i}]", f"collector.follow[{i}]: Squid's {what} format logs no request sizes, "
                            f"so {unseen}: log with the logformat in docs/log-formats.md and follow that log as "
                            "squid-logformat"))
        return out


_NO_REQUEST_SIZES = {"squid": "native", "squid-common": "common or combined"}
"""The followed formats of Squid's that have no request size, and what Squid calls them."""
