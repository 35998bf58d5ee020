"""The root configuration: where the directory, register, map and policy live, and where data goes.

`load(path)` reads the root YAML, then each file it names (paths relative to the root file), and returns
everything validated, or raises `ConfigError` naming the file, field and value. The category lists are the
exception: they are read when first used (`Loaded.categories`), since most commands never judge traffic.
The storage URL may be overridden by the `ICTWATCH_STORAGE_URL` environment variable (the demo and tests
use this).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, model_validator

from collector.config import CollectorSettings
from ictwatch import places
from rules.config import (
    ConfigError,
    Device,
    DeviceRegister,
    DeviceUse,
    Directory,
    NetworkMap,
    Strict,
    load_model,
    read_directory_csv,
    yaml_line,
)
from rules.policy import Policy

if TYPE_CHECKING:  # each imported where it is used: a command opens only what it uses
    from reports.audit import ChainFiles
    from rules.categories import CategoryIndex
    from rules.engine import Engine
    from storage.spool import Spool
    from storage.store import Store

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def split_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a `host:port` the settings validated."""
    host, _, port = listen.rpartition(":")
    return host, int(port)


def _listen(value: str) -> str:
    """`host:port`, the host a name or a full IPv4 address. Shorthand IPv4 (`127.1`, `0`) is refused: the
    socket would take it, but `0` is every interface, not loopback."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port, with a port from 1 to 65535")
    if ":" in host or host.startswith("["):
        raise ValueError("listening on an IPv6 address is not supported yet: give an IPv4 address or a host name")
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("not a full IPv4 address: write all four parts, e.g. 127.0.0.1 "
                             "(0.0.0.0 for every interface)") from None
    elif not _HOSTNAME.match(host):
        raise ValueError("the host is neither an address nor a host name")
    return value


Listen = Annotated[str, AfterValidator(_listen)]
"""A validated `host:port` to listen on."""


def on_loopback(listen: str) -> bool:
    """Whether a validated `host:port` listens on loopback only (`localhost`, 127.0.0.0/8)."""
    host, _ = split_listen(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, treat it as reachable


class StorageSettings(Strict):
    """Where activity is stored, and where batches wait when it cannot be reached."""

    url: str = Field(places.DEFAULT_URL, description="chdb://PATH (embedded) or http(s)://host:8123.")
    database: str = Field("ictwatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(30.0, gt=0, description="Connect and request timeout for a ClickHouse server.")
    spool: Path | None = Field(None, description=(
        "Folder of the disk spool, relative to this file; by default beside an embedded store (PATH-spool), "
        "else `spool` beside this file. The ICTWATCH_SPOOL environment variable overrides it."))
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20,
                                 description="Size cap of the spool (1 GiB by default; at least 1 MiB).")
    engine: dict[str, int | str] = Field(default_factory=dict, description=(
        "Settings of the embedded store's engine (ClickHouse's names), over the small-gateway defaults "
        "(docs/operations.md); a ClickHouse server keeps its own."))


class WebSettings(Strict):
    """The report web page (`ictwatch serve`)."""

    listen: Listen = Field("127.0.0.1:8443", description="host:port to listen on (IPv4 or a host name).")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain); required unless on loopback.")
    tls_key: Path | None = Field(None, description="PEM private key of the certificate.")
    accounts: Path = Field(Path("accounts.json"), description="Local accounts file (scrypt hashes), 0600.")
    session_idle_minutes: int = Field(30, gt=0, le=480)
    request_timeout_s: float = Field(20.0, gt=0, le=300, description=(
        "Time for a connection's TLS handshake, then for its request in full, to arrive; else it is closed."))
    max_connections: int = Field(64, gt=0, le=1024, description=(
        "Connections served at once (a thread each), a quarter of them (at least 6) from one client address; "
        "one more is closed unanswered."))

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_cert is None and not on_loopback(self.listen):
            raise ValueError(f"listening on {self.listen}, beyond loopback, needs tls_cert and tls_key: the page "
                             "carries personal data")
        return self


class AuditSettings(Strict):
    """Where the report audit chain keeps its key and its head (reports/audit.py), outside the store."""

    key: Path | None = Field(None, description=(
        "HMAC key that signs the audit chain, relative to this file; made (mode 0600) when the chain is first "
        "used. Readable by the service's user only, and backed up: a chain whose key is lost cannot be "
        "verified. By default `audit.key` beside an embedded store, else beside the spool."))
    head: Path | None = Field(None, description=(
        "Append-only file of the chain's latest rows (number and MAC), relative to this file; by default "
        "`audit.head` beside the key."))


class MetricsSettings(Strict):
    """The daemon's metrics and health endpoint."""

    listen: Listen = Field("127.0.0.1:9750", description="host:port for /metrics and /health.")


class ControlSettings(Strict):
    """The daemon's command socket (ictwatch/control.py), through which commands run while it holds the store."""

    socket: Path | None = Field(None, description=(
        "Unix socket path, relative to this file; by default `ictwatch.sock` beside the spool folder (for the "
        "deploy guide's store, /var/lib/ictwatch/ictwatch.sock). Made 0600: the service's user and root only."))


class Settings(Strict):
    """The root file: paths of the other files and the storage settings."""

    directory: Path = Field(description="Staff directory: YAML, or a CSV export (username, name, role, ...).")
    devices: Path = Field(description="Device register (YAML).")
    network: Path = Field(description="Network map (YAML).")
    policy: Path = Field(description="Policy (YAML).")
    storage: StorageSettings = StorageSettings()
    collector: CollectorSettings = CollectorSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()
    audit: AuditSettings = AuditSettings()
    control: ControlSettings = ControlSettings()


@dataclass(frozen=True)
class Loaded:
    """Everything a command needs, validated; the category lists are read when first asked for (see
    `categories`)."""

    path: Path
    settings: Settings
    directory: Directory
    devices: DeviceRegister
    network: NetworkMap
    policy: Policy
    storage_url: str
    lists_path: Path
    """The policy's category lists folder (a link to the installed set after `categories update`)."""
    spool_path: Path
    """The disk spool's folder."""

    @functools.cached_property
    def categories(self) -> CategoryIndex:
        """The policy's category lists, loaded the first time they are asked for (by the engine, `check`):
        the full UT1 set takes 1.4 s and 360 MB at its peak to load (README), which commands that judge no
        traffic (`breaches`, `audit`, `spool`, ...) never pay. `ConfigError` when a mapped list is missing."""
        from rules.listupdate import load_in_use

        return load_in_use(self.lists_path, self.policy.categories)

    @property
    def socket_path(self) -> Path:
        """The daemon's command socket."""
        return places.socket_path(self.path, self.settings.control.socket, self.spool_path)

    def request_size_warnings(self) -> list[str]:
        """The collector's warnings about Squid logs without request sizes, each naming its line here."""
        out = []
        for field, warning in self.settings.collector.without_request_sizes():
            line = yaml_line(self.path, f"collector.{field}")
            out.append(f"{self.path}:{line}: {warning}" if line else f"{self.path}: {warning}")
        return out

    def open_store(self) -> Store:
        """The store (connected when first used)."""
        from storage.schema import Retention
        from storage.store import Store

        r = self.policy.retention
        storage = self.settings.storage
        return Store(self.storage_url, storage.database, storage.timeout_s,
                     Retention(r.activity_days, r.url_days, r.leases_days, r.audit_days), storage.engine)

    def chain_files(self) -> ChainFiles:
        """The audit chain's lock, key and head files: the lock beside the spool, the key and head as
        configured, by default beside an embedded store (else beside the spool)."""
        from reports.audit import ChainFiles

        audit = self.settings.audit
        url = self.storage_url
        state = Path(url.removeprefix("chdb://")).parent if url.startswith("chdb://") else self.spool_path.parent
        key = self.path.parent / audit.key if audit.key else state / "audit.key"
        head = self.path.parent / audit.head if audit.head else key.parent / "audit.head"
        return ChainFiles(self.spool_path.parent / ".ictwatch-audit.lock", key, head, self.path)

    def open_spool(self) -> Spool:
        """The disk spool (a torn record left by a crash is found and set aside here)."""
        from storage.spool import Spool

        return Spool(self.spool_path, self.settings.storage.spool_max_bytes)

    def engine(self, categories: CategoryIndex | None = None) -> Engine:
        """A policy engine for this configuration (with other category lists, if given)."""
        from rules.engine import Engine
        from rules.identity import Identity

        identity = Identity(self.directory, self.devices.devices, self.network, self.policy.calendar.timezone)
        members: dict[str, set[str]] = {}
        for person in self.directory.people:
            for group in person.groups:
                members.setdefault(group, set()).add(person.username)
        return Engine(self.policy, self.categories if categories is None else categories, identity,
                      {g: frozenset(u) for g, u in members.items()})


def load(path: str | Path) -> Loaded:
    """Load and validate the root file and everything it names."""
    path = Path(path)
    settings = load_model(path, Settings)
    for field, value, problem in settings.collector.problems()[:1]:
        raise ConfigError(path, f"collector.{field}", value, problem)
    base = path.parent
    directory_path = base / settings.directory
    directory = load_model(directory_path, Directory, read_directory_csv(directory_path)
                           if directory_path.suffix.lower() == ".csv" else None)
    people = {p.username for p in directory.people}
    for i, p in enumerate(directory.people):
        if p.line_manager is not None and p.line_manager not in people:
            raise ConfigError(directory_path, f"people[{i}].line_manager", p.line_manager,
                              "not in the staff directory")
    devices = load_model(base / settings.devices, DeviceRegister)
    for i, d in enumerate(devices.devices):
        _check_owner(base / settings.devices, i, d, people)
    network = load_model(base / settings.network, NetworkMap)
    policy_path = base / settings.policy
    policy = load_model(policy_path, Policy)
    for field, value, problem in policy.problems()[:1]:
        raise ConfigError(policy_path, field, value, problem)
    groups = {g for p in directory.people for g in p.groups}
    device_ids = {d.id for d in devices.devices}
    place_names = {loc.name for loc in network.locations}
    unknown = {"users": "not in the staff directory", "groups": "no one is in this group",
               "granted_by": "not in the staff directory", "devices": "not in the device register",
               "places": "not a place on the network map"}
    for i, waiver in enumerate(policy.waivers):
        for field, names, known in (("users", waiver.users, people), ("groups", waiver.groups, groups),
                                    ("granted_by", (waiver.granted_by,), people),
                                    ("devices", waiver.devices, device_ids), ("places", waiver.places, place_names)):
            for name in names:
                if name not in known:
                    raise ConfigError(policy_path, f"waivers[{i}].{field}", name, unknown[field])
    lists = policy_path.parent / policy.categories.lists
    url, spool_path = places.store_and_spool(settings.storage.url, settings.storage.spool, base)
    return Loaded(path, settings, directory, devices, network, policy, url, lists, spool_path)


def _check_owner(path: Path, i: int, device: Device, people: set[str]) -> None:
    """A device of someone's own use or in someone's care names them, in the directory; a shared one names nobody."""
    if device.use == DeviceUse.shared:
        if device.owner is not None:
            raise ConfigError(path, f"devices[{i}].use", device.use.value, "a shared device has nobody responsible, "
                              "so no owner; a device in someone's care is `use: care`")
        return
    if device.owner is None:
        raise ConfigError(path, f"devices[{i}]", device.id, f"no owner: a device of `use: {device.use.value}` names "
                          "its owner (a device nobody is responsible for is `use: shared`)")
    if device.owner not in people:
        raise ConfigError(path, f"devices[{i}].owner", device.owner, "not in the staff directory")
