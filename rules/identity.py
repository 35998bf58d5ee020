"""Who and where for each observation, as it was at that moment: device, person and place.

The device is found by MAC in the register: the client MAC the frame carried, else the MAC that held
the client address at that time according to the lease history (DHCP seen on the wire, lease files, and
what earlier runs stored; an as-of join: the latest lease of that address that began before the
observation and had not expired), else a static address reservation. The person is the proxy's
authenticated user (a device anyone may use is used by whoever logged in), else the owner of a device of
their own use (`use: own` in the register). A device in someone's care (`use: care`: an iPad bank pupils
use) is not that person's own use: without a login its activity has no user, and `responsible` names the
person in whose care it is; a shared device (`use: shared`) has neither, its activity the device's and its
place's. The place is
where a DHCP relay's option 82 (an access point, an SSID) put the client while its lease lasts, else the
network map's subnet of the client address, else the VLAN its frames carried. Unknown is a value: rows
without a match keep null device, user or location.

A DHCP message is about its client, whoever sent it: a relayed one goes between the DHCP server and the
relay agent, so its source address is the server's or the relay's. Its device is its client's MAC
(chaddr, or the DUID's), never an address's; its place is the one its own relay ids (option 82, v6
interface-id and remote-id) name, else the relay agent's subnet (giaddr, v6 link-address), else the
client's lease's place, else the subnet of the client's own address (ciaddr, the address assigned or
requested, the source of a message the client sent itself), else the VLAN of a frame on the client's
link. Never the server's address, nor the VLAN of a frame between server and relay.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import polars as pl

from rules.config import Device, Directory, Location, NetworkMap

DEFAULT_LEASE_S = 24 * 3600
"""Lease length assumed when an ACK gives none."""
_CLIENT_PORTS = (68, 546)
"""DHCP's client ports (v4, v6): a message from one was sent by the client itself, one to one goes over
the client's own link; relay agents and servers talk from and to 67 and 547."""
KEEP_ENDED = dt.timedelta(days=7)
"""Leases that ended longer ago than this (in observed time) are dropped from memory: inputs arrive
somewhat out of order (a capture, then the day's proxy log), never a week late."""

_KEYS = {"_mac": pl.String(), "_client": pl.String(), "_leased": pl.Boolean(), "_vlan": pl.UInt16(),
         "_addr": pl.String(), "dhcp_relay_ip": pl.String()}
"""What the device and place of a row are looked up by (once per distinct combination in a batch)."""
_LOOKUP = _KEYS | {
    "device": pl.String(), "device_type": pl.String(), "device_owner": pl.String(), "owner": pl.String(),
    "_responsible": pl.String(),
    "device_registered": pl.Boolean(), "device_source": pl.String(), "_relay_place": pl.String(),
    "location": pl.String(), "location_kind": pl.String(), "_status": pl.String(), "_status_since": pl.Date(),
    "_owner_leave": pl.Date(),
}
_LEASES = pl.Schema({"ip": pl.String(), "lease_mac": pl.String(), "lease_start": pl.Datetime("us", "UTC"),
           "lease_end": pl.Datetime("us", "UTC"), "lease_ref": pl.String(), "lease_place": pl.String()})


class Identity:
    """Register, directory, network map and the lease history, looked up once per distinct value."""

    def __init__(self, directory: Directory, devices: tuple[Device, ...], network: NetworkMap,
                 timezone: str = "Europe/London") -> None:
        """`timezone` is the school's: a device's status and an owner's leaving date change at local midnight."""
        self._roles = {p.username: p.role.value for p in directory.people}
        self._groups = {p.username: list(p.groups) for p in directory.people}
        self._leave = {p.username: p.leave for p in directory.people if p.leave is not None}
        self._timezone = timezone
        self._by_mac = {mac: d for d in devices for mac in d.macs}
        self._by_ip = {str(a): d for d in devices for a in d.addresses}
        self._nets = [(net, loc) for loc in network.locations for net in loc.subnets]
        self._vlans = {loc.vlan: loc for loc in network.locations if loc.vlan is not None}
        # a relay id matches as a whole word of the circuit or remote id: `ap1` is not in `ap12`
        self._relay_places = [(re.compile(rf"(?<![a-z0-9]){re.escape(text.lower())}(?![a-z0-9])"), loc)
                              for loc in network.locations for text in loc.relay_ids]
        self._kinds = {loc.name: loc.kind.value for loc in network.locations}
        self.leases = pl.DataFrame(schema=_LEASES)

    def learn(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add the DHCP assignments in an observation frame to the lease history (v4 ACKs, v6 REPLYs with
        an address); returns the new leases."""
        acks = df.filter((pl.col("kind") == "dhcp") & pl.col("dhcp_type").is_in(["ACK", "REPLY"])
                         & pl.col("assigned_ip").is_not_null() & pl.col("src_mac").is_not_null())
        if acks.height == 0:
            return pl.DataFrame(schema=_LEASES)
        new = acks.select(
            ip=pl.col("assigned_ip"), lease_mac=pl.col("src_mac"), lease_start=pl.col("ts"),
            lease_end=pl.col("ts") + pl.duration(seconds=pl.col("lease_s").fill_null(DEFAULT_LEASE_S).cast(pl.Int64)),
            lease_ref=pl.col("source_ref"), lease_place=self._agent_place(acks),
        )
        self.add(new)
        return new

    def _agent_place(self, df: pl.DataFrame) -> pl.Expr:
        """The place the network map's `relay_ids` find in each row's relay ids (null where none matches)."""
        relay = pl.concat_str([pl.col(c).fill_null("") for c in ("dhcp_circuit_id", "dhcp_remote_id")],
                              separator=" ").str.to_lowercase()
        texts = df.select(relay.unique()).to_series().to_list()
        places = {t: next((loc.name for needle, loc in self._relay_places if needle.search(t)), None) for t in texts}
        return relay.replace_strict(places, default=None, return_dtype=pl.String)

    def add(self, leases: pl.DataFrame) -> None:
        """Add known leases (learnt now, or stored earlier) to the history; a place is optional."""
        if leases.height == 0:
            return
        if "lease_place" not in leases.columns:
            leases = leases.with_columns(lease_place=pl.lit(None, pl.String))
        leases = pl.concat([self.leases, leases.select(list(_LEASES)).cast(_LEASES)]).unique(maintain_order=True)
        horizon = leases.get_column("lease_start").max() - KEEP_ENDED  # type: ignore[operator]
        self.leases = leases.filter(pl.col("lease_end") >= horizon).sort("ip", "lease_start")

    def _lease_macs(self, df: pl.DataFrame) -> pl.DataFrame:
        """`lease_mac`, `lease_ref` and `lease_place` for each row: who held its client address (`_client`)
        at its time, and where the DHCP relay put them."""
        rows = df.select("ts", "_client").with_row_index("_row")
        if self.leases.height == 0:
            return rows.select("_row", lease_mac=pl.lit(None, pl.String), lease_ref=pl.lit(None, pl.String),
                               lease_place=pl.lit(None, pl.String))
        in_order = rows.get_column("ts").is_sorted()  # a proxy log's lines are: no sorting there and back
        found = (rows if in_order else rows.sort("ts")).join_asof(
            self.leases.sort("lease_start"), left_on="ts", right_on="lease_start", by_left="_client", by_right="ip",
            strategy="backward", check_sortedness=False)  # both sorted on the time
        live = pl.col("lease_end") >= pl.col("ts")
        found = found.select(
            "_row", lease_mac=pl.when(live).then(pl.col("lease_mac")),
            lease_ref=pl.when(live).then(pl.col("lease_ref")), lease_place=pl.when(live).then(pl.col("lease_place")),
        )
        return found if in_order else found.sort("_row")

    def _device_row(self, mac: str | None, ip: str | None, leased: bool) -> dict:
        device = self._by_mac.get(mac or "") or self._by_ip.get(ip or "")
        if device is None:
            return {"device": None, "device_type": None, "device_owner": None, "owner": None, "_responsible": None,
                    "device_registered": False, "device_source": None, "_status": None, "_status_since": None,
                    "_owner_leave": None}
        return {
            "device": device.id, "device_type": device.type.value, "device_owner": device.ownership,
            "owner": device.user, "_responsible": device.responsible, "device_registered": True,
            "_status": device.status,
            "_status_since": device.status_since, "_owner_leave": self._leave.get(device.owner or ""),
            "device_source": ("dhcp_lease" if leased else "register_mac") if mac in self._by_mac
            else "register_address",
        }

    def _subnet_place(self, ip: str | None) -> Location | None:
        """The place whose subnet holds an address."""
        if not ip:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        return next((loc for net, loc in self._nets if addr.version == net.version and addr in net), None)

    def _location_row(self, ip: str | None, relay: str | None, vlan: int | None) -> dict:
        """The place of a DHCP relay agent's address (`_relay_place`), and that of a client address (its
        subnet), else of the VLAN its frames were tagged with."""
        place = self._subnet_place(ip) or (self._vlans.get(vlan) if vlan is not None else None)
        relay_place = self._subnet_place(relay)
        return {"_relay_place": relay_place.name if relay_place else None, "location": place.name if place else None,
                "location_kind": place.kind.value if place else None}

    @staticmethod
    def _client_address() -> pl.Expr:
        """Each row's client address: a DHCP message's client's own (ciaddr; the address given, else
        asked for; the source of a message the client sent itself), every other row's source address."""
        return pl.when(pl.col("kind") == "dhcp").then(pl.coalesce(
            "dhcp_client_ip", "assigned_ip", "requested_ip",
            pl.when(pl.col("src_port").is_in(_CLIENT_PORTS)).then(pl.col("src_ip")),
        )).otherwise(pl.col("src_ip"))

    def _dhcp_terms(self, df: pl.DataFrame, lease_mac: pl.Series, lease_place: pl.Series) -> dict[str, pl.Expr]:
        """`_addr` (the address a device may be found by), `_place` (the lease's place), `_vlan` (the VLAN
        that may place the row) and `_agent` (the place its own relay ids name) in a batch with DHCP."""
        dhcp, mac = pl.col("kind") == "dhcp", pl.col("src_mac")
        on_client_link = pl.col("src_port").is_in(_CLIENT_PORTS) | pl.col("dst_port").is_in(_CLIENT_PORTS)
        return {
            # a DHCP message's MAC is its client's: no address stands in for it, and only the client's
            # own lease places it
            "_addr": pl.when(dhcp & mac.is_not_null()).then(None).otherwise(pl.col("_client")),
            "_place": pl.when(~dhcp | mac.is_null() | (mac == lease_mac)).then(lease_place),
            "_vlan": pl.when(~dhcp | on_client_link).then(pl.col("vlan")),
            "_agent": pl.when(dhcp).then(self._agent_place(df.filter(dhcp))),
        }

    def annotate(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add the Subject columns to an observation frame: user, responsible, role, groups, device, device_type,
        device_owner, device_registered, device_status, owner_left, location, location_kind, identity_source
        (null where unknown)."""
        # most batches hold no DHCP (a proxy log's): they keep the short way, keyed on the source address
        dhcp_rows = bool((df.get_column("kind") == "dhcp").any())
        df = df.with_columns(_client=self._client_address() if dhcp_rows else pl.col("src_ip"))
        leased = self._lease_macs(df)
        lease_mac, lease_place = leased.get_column("lease_mac"), leased.get_column("lease_place")
        df = df.with_columns(
            _mac=pl.coalesce(pl.col("src_mac"), lease_mac),
            _leased=pl.col("src_mac").is_null() & lease_mac.is_not_null(),
            **(self._dhcp_terms(df, lease_mac, lease_place) if dhcp_rows else
               {"_place": lease_place, "_vlan": pl.col("vlan"), "_agent": pl.lit(None, pl.String)}),
        )
        on = ["_mac", "_client", "_leased", "_vlan", *(("_addr", "dhcp_relay_ip") if dhcp_rows else ())]
        rows = [
            {**key, **self._device_row(key["_mac"], key.get("_addr", key["_client"]), key["_leased"]),
             **self._location_row(key["_client"], key.get("dhcp_relay_ip"), key["_vlan"])}
            for key in df.select(on).unique().iter_rows(named=True)
        ]
        lookup = pl.DataFrame(rows, schema={k: t for k, t in _LOOKUP.items() if k in on or k not in _KEYS})
        out = df.join(lookup, on=on, how="left", nulls_equal=True, maintain_order="left")
        # A locally administered MAC (bit 1 of the first octet) is a phone's or laptop's private Wi-Fi
        # address: it changes, so an unregistered one says little about which device it was.
        randomised = pl.col("_mac").str.slice(1, 1).is_in(["2", "3", "6", "7", "a", "b", "e", "f"])
        # A DHCP message's own relay ids, then its relay agent's subnet; then where a relay (a Wi-Fi access
        # point) put the client for its lease beats the client's subnet, while the lease lasts.
        relayed = pl.coalesce("_agent", "_relay_place", "_place")
        # The register's status holds from its date on (before it the device was in use); an owner who
        # has left makes any sighting of the device after the leaving day worth a look (A1).
        if lookup.select(pl.any_horizontal(pl.col("_status_since", "_owner_leave").is_not_null().any())).item():
            day = pl.col("ts").dt.convert_time_zone(self._timezone).dt.date()
            status = pl.when(pl.col("_status_since").is_null() | (day >= pl.col("_status_since"))).then(
                pl.col("_status")).otherwise(pl.when(pl.col("_status").is_not_null()).then(pl.lit("issued")))
            left = (day > pl.col("_owner_leave")).fill_null(False)
        else:  # no dated status or leaver among the batch's devices: no local day needed
            status, left = pl.col("_status"), pl.lit(False)
        user = pl.coalesce("proxy_user", "owner")
        # a login names who used a device in someone's care: then it is that person's own use, and not the
        # responsible person's to answer for in their report
        responsible = pl.when(pl.col("proxy_user").is_null()).then(pl.col("_responsible"))
        source = pl.when(pl.col("proxy_user").is_not_null()).then(pl.lit("proxy_auth")).otherwise(
            pl.col("device_source")
        )
        roles = pl.col("user").replace_strict(self._roles, default=None, return_dtype=pl.String)
        confidence = (  # how sure the user is: a login, a registered MAC, an address at that time, nothing
            pl.when(pl.col("identity_source") == "proxy_auth").then(pl.lit("high"))
            .when(pl.col("identity_source") == "register_mac").then(pl.lit("high"))
            .when(pl.col("identity_source") == "dhcp_lease").then(pl.lit("medium"))
            .when(pl.col("identity_source") == "register_address").then(pl.lit("low"))
        )
        # two contexts and one drop: each step costs about as much on a small batch as on a big one
        return out.with_columns(
            mac_randomised=randomised.fill_null(False),
            location=pl.coalesce(relayed, "location"),
            location_kind=pl.when(relayed.is_not_null()).then(
                relayed.replace_strict(self._kinds, default=None, return_dtype=pl.String)
            ).otherwise(pl.col("location_kind")),
            device_status=status, owner_left=left, user=user, responsible=responsible, identity_source=source,
        ).with_columns(
            role=roles, identity_confidence=confidence,
            groups=pl.col("user").replace_strict(self._groups, default=[], return_dtype=pl.List(pl.String)),
        ).drop(*(k for k in on if k != "dhcp_relay_ip"), "_agent", "_relay_place", "_place", "_status",
               "_status_since", "_owner_leave", "owner", "_responsible", "device_source")
