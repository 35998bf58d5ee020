"""Who and where for each observation: device, person and place.

This first version resolves from static facts: the device register (by the client MAC when the frame
carried one, else by a static address reservation), the proxy's authenticated user name (which beats the
device owner: a shared device is used by whoever logged in), and the network map (client address →
subnet → place). Unknown is a value: rows without a match keep null device, user or location.
"""

from __future__ import annotations

import ipaddress

import polars as pl

from rules.config import Device, Directory, NetworkMap


class Identity:
    """Static identity: register, directory and network map, looked up once per distinct value."""

    def __init__(self, directory: Directory, devices: tuple[Device, ...], network: NetworkMap) -> None:
        self._roles = {p.username: p.role.value for p in directory.people}
        self._by_mac = {mac: d for d in devices for mac in d.macs}
        self._by_ip = {str(a): d for d in devices for a in d.addresses}
        self._nets = [(net, loc) for loc in network.locations for net in loc.subnets]

    def _device_row(self, mac: str | None, ip: str | None) -> dict:
        device = self._by_mac.get(mac or "") or self._by_ip.get(ip or "")
        if device is None:
            return {"device": None, "device_type": None, "device_owner": None, "owner": None,
                    "device_registered": False, "device_source": None}
        return {
            "device": device.id, "device_type": device.type.value, "device_owner": device.ownership,
            "owner": device.owner, "device_registered": True,
            "device_source": "register_mac" if mac in self._by_mac else "register_address",
        }

    def _location_row(self, ip: str | None) -> dict:
        try:
            addr = ipaddress.ip_address(ip or "")
        except ValueError:
            return {"location": None, "location_kind": None}
        for net, loc in self._nets:
            if addr.version == net.version and addr in net:
                return {"location": loc.name, "location_kind": loc.kind.value}
        return {"location": None, "location_kind": None}

    def annotate(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add the Subject columns to an observation frame: user, role, device, device_type, device_owner,
        device_registered, location, location_kind, identity_source (null where unknown)."""
        keys = df.select("src_mac", "src_ip").unique()
        rows = [
            {"src_mac": m, "src_ip": ip, **self._device_row(m, ip), **self._location_row(ip)}
            for m, ip in keys.iter_rows()
        ]
        lookup = pl.DataFrame(rows, schema={
            "src_mac": pl.String, "src_ip": pl.String, "device": pl.String, "device_type": pl.String,
            "device_owner": pl.String, "owner": pl.String, "device_registered": pl.Boolean,
            "device_source": pl.String, "location": pl.String, "location_kind": pl.String,
        })
        out = df.join(lookup, on=["src_mac", "src_ip"], how="left", nulls_equal=True, maintain_order="left")
        user = pl.coalesce("proxy_user", "owner")
        source = pl.when(pl.col("proxy_user").is_not_null()).then(pl.lit("proxy_auth")).otherwise(
            pl.col("device_source")
        )
        roles = pl.col("user").replace_strict(self._roles, default=None, return_dtype=pl.String)
        return (
            out.with_columns(user=user, identity_source=source)
            .with_columns(role=roles)
            .drop("owner", "device_source")
        )
