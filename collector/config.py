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
