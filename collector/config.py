"""The collector's settings, composed into the root configuration by `ictwatch.settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    capture_tool: Literal["auto", "dumpcap", "tcpdump", "scapy"] = Field(
        "auto", description="auto: dumpcap, else tcpdump, else scapy's in-process sniffer (needs root)."
    )
