"""Who and where: the staff directory, the device register and the network map, as validated files.

Each file is YAML validated by pydantic with `extra="forbid"`; `load_model` turns a validation failure
into a `ConfigError` that names the file, the field (as a path such as `people[3].role`) and the value.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PERSONAL_FIELDS = frozenset({"username", "name", "line_manager", "owner", "macs", "addresses"})
"""Fields whose values identify a person or their device: named by row in messages, never quoted."""


class ConfigError(Exception):
    """A config, policy, directory, register or map file that cannot be used; start-up must stop.

    The message names the file, the field and the value, except that a value from a field in
    PERSONAL_FIELDS is withheld (the row and field point the operator at it); `value` keeps it.
    """

    def __init__(self, file: Path | str, field: str, value: object, problem: str) -> None:
        self.file, self.field, self.value, self.problem = str(file), field, value, problem
        last = re.sub(r"\[\d+\]", "", field.rsplit(".", 1)[-1])
        if last in PERSONAL_FIELDS:
            shown = "(value withheld: personal data)"
        else:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        self.line = yaml_line(Path(file), field) if str(file).endswith((".yaml", ".yml")) else None
        where = f"{file}:{self.line}" if self.line else str(file)
        super().__init__(f"{where}: {field or '(file)'}: {shown}: {problem}")


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""`yaml.safe_load`'s loader, in C where PyYAML was built with libyaml (about ten times faster: a command
reads five files at start-up); its errors and nodes carry the same line marks."""


def yaml_line(path: Path, field: str) -> int | None:
    """The line of `field` (`rules[3].when.all[0].kind`) in the YAML file `path`, where it can be found."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        if node is None:
            break
        line = node.start_mark.line + 1
        if part.startswith("[") and isinstance(node, yaml.SequenceNode):
            index = int(part[1:-1])
            node = node.value[index] if index < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    """Staff roles as a school names them."""

    teacher = "teacher"
    teaching_assistant = "teaching_assistant"
    office = "office"
    senior_leader = "senior_leader"
    headteacher = "headteacher"
    network_manager = "network_manager"
    safeguarding_lead = "safeguarding_lead"
    support = "support"


class Person(Strict):
    """One member of staff."""

    username: str = Field(pattern=r"^[a-z0-9._-]+$", description="Login name; the key everywhere else.")
    name: str = Field(min_length=1, description="Display name for reports.")
    role: Role
    line_manager: str | None = Field(None, description="Username of the line manager; none for the head.")
    groups: tuple[str, ...] = ()
    start: dt.date | None = Field(None, description="First day of employment, if the export gives it.")
    leave: dt.date | None = Field(
        None, description="Last day of employment: a leaver's devices seen afterwards matter (A1)."
    )


class Directory(Strict):
    """The staff directory (an MIS or directory-service export)."""

    people: tuple[Person, ...]

    def by_username(self) -> dict[str, Person]:
        """Username → person."""
        return {p.username: p for p in self.people}


class DeviceType(StrEnum):
    """What kind of device a register entry is."""

    school_laptop = "school_laptop"
    school_desktop = "school_desktop"
    school_ipad = "school_ipad"
    personal_phone = "personal_phone"
    personal_laptop = "personal_laptop"
    personal_tablet = "personal_tablet"


class DeviceUse(StrEnum):
    """Whose use a device's activity is, when no login says who used it."""

    own = "own"
    """Its owner's own device (a laptop, a phone): what it does is the owner's own use."""
    care = "care"
    """Used by others, pupils most often (an iPad bank, a class trolley), in the care of its owner: what it does
    is the device's, and the owner is the person responsible for it, not the person who did it."""
    shared = "shared"
    """Used by anyone, with nobody responsible (the hall's AV PC): what it does is the device's and its place's."""


class Device(Strict):
    """One register entry: a device (or a bank of iPads), its addresses, owner, use and type."""

    id: str = Field(min_length=1, description="Asset tag or a name the network manager uses.")
    macs: tuple[str, ...] = Field((), description="Hardware addresses, any common notation.")
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = Field(
        (), description="Static reservations: addresses only this device uses."
    )
    owner: str | None = Field(None, description="Username of the person the device belongs to (`use: own`) or "
                              "is in the care of (`use: care`); none for a shared device.")
    type: DeviceType
    use: DeviceUse = Field(DeviceUse.own, description="own: the owner's own device, its activity theirs; care: "
                           "used by pupils (or others) in the owner's care, its activity the device's; shared: "
                           "nobody responsible. Not given: `care` for a school iPad, else `own`.")
    status: Literal["issued", "lost", "returned"] = Field(
        "issued", description="issued: in use; lost: reported lost (seen again → I4); returned: handed back (A1)."
    )
    status_since: dt.date | None = Field(None, description="When the status was last changed.")

    @model_validator(mode="before")
    @classmethod
    def _use_by_type(cls, data: Any) -> Any:
        """A register written before `use` existed: a school iPad is a class's, in its owner's care."""
        if isinstance(data, dict) and "use" not in data and data.get("type") == DeviceType.school_ipad.value:
            return {**data, "use": DeviceUse.care.value}
        return data

    @property
    def responsible(self) -> str | None:
        """The person in whose care the device is (`use: care`), else None."""
        return self.owner if self.use == DeviceUse.care else None

    @property
    def user(self) -> str | None:
        """The person whose own use the device's activity is when no login names anyone (`use: own`)."""
        return self.owner if self.use == DeviceUse.own else None

    @field_validator("macs")
    @classmethod
    def _normalise_macs(cls, macs: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for mac in macs:
            digits = "".join(c for c in mac.lower() if c in "0123456789abcdef")
            if len(digits) != 12:
                raise ValueError(f"{mac!r} is not a MAC address")
            out.append(":".join(digits[i : i + 2] for i in range(0, 12, 2)))
        return tuple(out)

    @property
    def ownership(self) -> str:
        """`school` or `personal`."""
        return "personal" if self.type.startswith("personal") else "school"


class DeviceRegister(Strict):
    """Every device the school knows about."""

    devices: tuple[Device, ...]


class LocationKind(StrEnum):
    """Kinds of place; the policy's allowed places are named by kind."""

    staff_room = "staff_room"
    office = "office"
    classroom = "classroom"
    hall = "hall"
    library = "library"
    guest = "guest"
    server = "server"
    other = "other"


class Location(Strict):
    """A named place and the subnets (or VLAN) that serve it."""

    name: str
    kind: LocationKind
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    vlan: int | None = Field(None, ge=1, le=4094)
    relay_ids: tuple[str, ...] = Field(
        (), description="Text that, found as a whole word in a DHCP message's relay agent circuit or remote id "
        "(option 82, case ignored; `AP1` is found in `AP1:Staff` but not in `AP12`), places the client here: "
        "Wi-Fi controllers put the access point's name and the SSID there. "
        "Such a place beats the subnet's while the lease lasts. Where the ids of a message match "
        "several places (an access point's name and a guest SSID), the first of them in the map wins: list "
        "the guest network before the rooms.")


class Service(Strict):
    """One of the school's own network services (resolver, DHCP server, gateway, proxy) and its addresses.
    Reports count the traffic to these apart, as the network's upkeep rather than anyone's browsing."""

    name: str = Field(min_length=1, description="What the service is, in the school's words: \"DNS resolver\".")
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = Field(
        min_length=1, description="The addresses it answers on, each a single address (no subnets).")


class NetworkMap(Strict):
    """Subnets and VLANs → places in the school, and the addresses of the school's own network services."""

    locations: tuple[Location, ...]
    services: tuple[Service, ...] = Field(
        (), description="The school's own resolvers, DHCP servers, gateway and proxy. A flow or lookup to one "
        "of them that names no site is the network's own traffic: a report counts it apart, not as browsing.")

    @field_validator("services")
    @classmethod
    def _one_service_an_address(cls, services: tuple[Service, ...]) -> tuple[Service, ...]:
        seen: dict[object, str] = {}
        for s in services:
            for a in s.addresses:
                if a in seen:
                    raise ValueError(f"address {a} is given to both {seen[a]!r} and {s.name!r}")
                seen[a] = s.name
        return services

    def service_names(self) -> dict[str, str]:
        """Each service address, as text, → the name of its service."""
        return {str(a): s.name for s in self.services for a in s.addresses}


M = TypeVar("M", bound=BaseModel)


DIRECTORY_COLUMNS = ("username", "name", "role", "line_manager", "groups", "start", "leave")


def read_directory_csv(path: Path) -> dict[str, Any]:
    """A staff directory exported as CSV (a header row with the DIRECTORY_COLUMNS it has; `groups`
    separated by `;`), as the data `Directory` validates. Unknown columns are refused, by name."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            unknown = [c for c in reader.fieldnames or [] if c not in DIRECTORY_COLUMNS]
            if unknown:
                raise ConfigError(path, "header", unknown[0],
                                  f"unknown column; columns are {', '.join(DIRECTORY_COLUMNS)}")
            people = []
            for row in reader:
                person = {k: v.strip() for k, v in row.items() if v and v.strip()}
                if "groups" in person:
                    person["groups"] = [g.strip() for g in person["groups"].split(";") if g.strip()]
                people.append(person)
    except OSError as exc:
        raise ConfigError(path, "", str(path), exc.strerror or str(exc)) from None
    return {"people": people}


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; `ConfigError` naming the line when it is not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", str(path), exc.strerror or str(exc)) from None
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError(path, where, "", f"not valid YAML: {getattr(exc, 'problem', exc)}") from None


def load_model(path: Path, model: type[M], data: Any = None) -> M:
    """Validate `data` (or the YAML in `path`) as `model`; `ConfigError` names file, field and value."""
    if data is None:
        data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(err["loc"])
        if path.suffix.lower() == ".csv":  # name the spreadsheet's row: the header is row 1
            field = re.sub(r"^people\[(\d+)\]\.", lambda m: f"row {int(m.group(1)) + 2}, column ", field)
        value = err.get("input")
        problem = err["msg"].removeprefix("Value error, ")
        raise ConfigError(path, field, value, problem) from None


_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _field_path(loc: tuple[int | str, ...]) -> str:
    """`people[3].role` from pydantic's location, without the tags it adds for union members."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _FIELD_NAME.match(part):
            out += f".{part}" if out else part
    return out
