"""The fields a rule's condition can test, one entry each.

Every key of a condition other than `all`, `any` and `not` is a `ConditionField` in FIELDS: the key,
the activity column it reads, the type of value the policy gives, how that value is matched against
the column, the words a school reads about it, and the observation kinds that can fill the column. Each
part that deals with conditions reads this table and nothing else: the `Condition` model in
rules/policy.py (its keys, types and descriptions), the compiled expressions in rules/engine.py,
`ictwatch explain`, the warnings of `ictwatch check` (a key that no kind its rule names ever fills) and
docs/policy-fields.md, which `python -m rules.fields` writes.

A new field is a new entry here; when it reads a column the activity does not have yet, the column goes
into storage/schema.py and whichever step fills it (rules/identity.py, rules/engine.py, the collector).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, get_args, get_origin

import polars as pl
from pydantic import AfterValidator, NonNegativeInt

from collector.observation import KINDS
from collector.packet.dhcp import MESSAGE_TYPES, V6_MESSAGE_TYPES
from rules.config import DeviceType, LocationKind, Role


def shown(value: object) -> str:
    """A value as `explain` prints it: `none` for nothing, a list joined with commas."""
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _plain(values: tuple) -> list:
    """The values of a list of choices as the column holds them (an enum member's value)."""
    return [getattr(v, "value", v) for v in values]


@dataclass(frozen=True, slots=True)
class Match:
    """One way of matching a condition's value against a column."""

    test: Callable[[pl.Expr, Any], pl.Expr]
    """The expression over the column (`pl.col(column)`; a null literal for a field without one) that
    holds where the value matches; a null is made false by the caller."""
    says: Callable[[str, Any], str]
    """`explain`'s words for the test, from the field's key in words (`file ext`) and the value."""
    words: str
    """How it matches, for docs/policy-fields.md."""


def _one_of(name: str, values: tuple) -> str:
    return f"{name} is one of {shown(_plain(values))}"


def _any_of(lists: pl.Expr, values: tuple[str, ...]) -> pl.Expr:
    """Whether a list column holds any of `values` (one pass over each list: four times quicker than a
    `list.contains` per value when a rule names eight categories)."""
    return lists.list.eval(pl.element().is_in(list(values))).list.any()


def _under(host: pl.Expr, domains: tuple[str, ...]) -> pl.Expr:
    return pl.any_horizontal([(host == d) | host.str.ends_with("." + d) for d in domains])


def _bytes_at_least(verb: str) -> Match:
    return Match(lambda column, least: column >= least, lambda _, least: f"the client {verb} at least {least:,} bytes",
                 "the column is at least the number given")


# The ways FIELDS match their values.
ONE_OF = Match(lambda column, values: column.is_in(_plain(values)), _one_of, "the column is one of the values")
NUMBER_ONE_OF = Match(lambda column, values: column.cast(pl.Int64).is_in(list(values)), _one_of,
                      "the column is one of the numbers")
LOWER_ONE_OF = Match(lambda column, values: column.str.to_lowercase().is_in(list(values)), _one_of,
                     "the column, in lower case, is one of the values (give them in lower case)")
ANY_OF = Match(_any_of, _one_of, "the column's list holds any of the values")
UNDER = Match(_under, lambda name, domains: f"{name} is one of {shown(domains)} or under one",
              "the column is one of the domains or a name under one (`example.com` takes `www.example.com`)")
EQUALS = Match(lambda column, value: column == value, lambda name, value: f"{name} is {str(value).lower()}",
               "the column equals the value")
IN_WINDOW = Match(lambda _, windows: pl.any_horizontal([pl.col(w) for w in windows]),
                  lambda _, windows: f"falls in {' or '.join(str(w) for w in windows)}",
                  "the activity's time falls in any of the windows named (worked out from the policy's calendar)")


def _known_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown activity kind {k!r}; kinds are {', '.join(KINDS)}")
    return kinds


DhcpType = Literal[tuple(sorted({*MESSAGE_TYPES.values(), *V6_MESSAGE_TYPES.values()}))]  # type: ignore[valid-type]
"""The DHCP message types the decoder names, v4 and v6."""
Window = Literal["school_day", "restricted_hours", "break"]
"""The calendar windows `rules.engine.with_windows` works out for each activity."""


@dataclass(frozen=True, slots=True)
class ConditionField:
    """One key a condition can test."""

    key: str
    """The key in the policy file."""
    column: str | None
    """The activity column it reads: stored (storage/schema.py), or worked out from the calendar by
    `rules.engine.with_windows`; None for `window`, whose value names the columns."""
    annotation: Any
    """The type of the value the policy gives, as pydantic validates it."""
    match: Match
    """How the value is matched against the column, and put in words."""
    description: str
    """What the field means, in the school's words (the policy model's description and the docs')."""
    kinds: tuple[str, ...]
    """The observation kinds whose activities can carry a value in the column."""
    unset: object = None
    """The column's value on an activity of another kind: null, or false for a flag that is false unless
    set. A condition that asks for this value holds for every kind."""

    def holds(self, value: Any) -> pl.Expr:
        """Where this key, given `value`, holds; false where the column is null."""
        column = pl.col(self.column) if self.column is not None else pl.lit(None)
        return self.match.test(column, value).fill_null(False)

    def says(self, value: Any) -> str:
        """The test in words, for `explain`."""
        return self.match.says(self.key.replace("_", " "), value)

    def can_hold(self, value: Any) -> frozenset[str]:
        """The kinds for which this key, given `value`, may hold."""
        return frozenset(KINDS) if value == self.unset else frozenset(self.kinds)


# Which kinds fill each column, as read from the code that fills it:
# - the subject columns (device, owner, role, groups, status) come from rules/identity.py for every
#   activity, an `absence` too (rules/absence.py gives it the iPad's MAC); the place needs a client
#   address or VLAN, which an absence has not;
# - the time windows and personal_use_allowed are worked out by rules/engine.py for every activity;
# - the rest come from the observation: collector/packet (packets.py makes dns and dhcp, and every kind
#   made from a connection, tls quic http email p2p login flow, starts with its addresses and a name),
#   collector/logs (squid, filterlogs: proxy; eve: dns tls quic http email dhcp flow; leasefiles: dhcp;
#   conntrack: flow) and collector/capture/tshark.py.
_EVERY = KINDS
_ADDRESSED = tuple(k for k in KINDS if k != "absence")  # an absence has no address, name or port

FIELDS: tuple[ConditionField, ...] = (
    ConditionField("kind", "kind", Annotated[tuple[str, ...], AfterValidator(_known_kinds)], ONE_OF,
                   f"What was seen: {', '.join(KINDS)} (docs/observation-fields.md).", _EVERY),
    ConditionField("category", "categories", tuple[str, ...], ANY_OF,
                   "Content categories of the host or a domain above it, of the URL or of the server's address, "
                   "from the policy's category lists.", _ADDRESSED),
    ConditionField("host", "host", tuple[str, ...], UNDER, "Domains; a host matches a domain or its subdomains.",
                   _ADDRESSED),  # a dhcp activity's host is the name the device gave itself
    ConditionField("port", "dst_port", tuple[int, ...], NUMBER_ONE_OF, "The server's port.", _ADDRESSED),
    ConditionField("device_type", "device_type", tuple[DeviceType, ...], ONE_OF,
                   "The device's type in the device register.", _EVERY),
    ConditionField("device_owner", "device_owner", Literal["school", "personal"], EQUALS,
                   "Whether the device is the school's or personal (from its type in the register).", _EVERY),
    ConditionField("device_registered", "device_registered", bool, EQUALS,
                   "Whether the device register knows the device.", _EVERY),
    ConditionField("role", "role", tuple[Role, ...], ONE_OF, "The person's role in the staff directory.", _EVERY),
    ConditionField("group", "groups", tuple[str, ...], ANY_OF,
                   "The user is in any of these directory groups, as they were at the time (stored with the "
                   "activity).", _EVERY),
    ConditionField("location_kind", "location_kind", tuple[LocationKind, ...], ONE_OF,
                   "The kind of place the device was in, from the network map.", _ADDRESSED),
    ConditionField("window", None, tuple[Window, ...], IN_WINDOW,
                   "Holds when the activity falls in any of these named windows.", _EVERY),
    ConditionField("personal_use_allowed", "personal_use_allowed", bool, EQUALS,
                   "Place and time allow personal use (P18).", _EVERY),
    ConditionField("proxy_denied", "denied", bool, EQUALS,
                   "The school's filtering refused the request (Squid's `http_access deny`, an e2guardian or "
                   "squidGuard block): a blocked attempt. Never the proxy asking for a login (407) or an error.",
                   ("proxy",), unset=False),
    ConditionField("http_status", "status", tuple[int, ...], NUMBER_ONE_OF,
                   "The HTTP status of the answer: the server's on the wire, the one the proxy logged (407: the "
                   "proxy asked for a login; 403: refused).", ("http", "proxy")),
    ConditionField("proxy_result", "proxy_action", tuple[str, ...], ONE_OF,
                   "The proxy's result code as its log writes it: Squid's `TCP_DENIED`, `TCP_MISS`, `TCP_TUNNEL`...; "
                   "e2guardian's `DENIED` or `EXCEPTION`; squidGuard's `REDIRECT`, `DENY` or `PASS`.", ("proxy",)),
    ConditionField("cleartext_credentials", "cleartext_credentials", bool, EQUALS,
                   "A password crossed the network readable.",
                   ("http", "email", "login"), unset=False),  # packet/apps.py, mail.py, logins.py
    ConditionField("file_ext", "file_ext", tuple[str, ...], LOWER_ONE_OF,
                   "Extension of a downloaded file (lower case): from the URL's last path segment, or from the "
                   "content type when it names a program or package (collector/filetypes.py).",
                   ("http", "proxy")),
    ConditionField("bytes_out_min", "bytes_out", NonNegativeInt, _bytes_at_least("sent"),
                   "The client sent at least this many bytes.",
                   ("flow", "proxy")),  # proxy: only a Squid logformat that logs `>st`
    ConditionField("bytes_in_min", "bytes_in", NonNegativeInt, _bytes_at_least("received"),
                   "The client received at least this many bytes.", ("flow", "proxy")),
    ConditionField("device_status", "device_status", tuple[Literal["issued", "lost", "returned"], ...], ONE_OF,
                   "The register's status of the device on that day.", _EVERY),
    ConditionField("owner_left", "owner_left", bool, EQUALS, "The device's owner had left the school by then.",
                   _EVERY),
    ConditionField("mac_randomised", "mac_randomised", bool, EQUALS,
                   "The client used a private (randomised) Wi-Fi address.", _EVERY),
    ConditionField("dhcp_type", "dhcp_type", tuple[DhcpType, ...], ONE_OF,  # type: ignore[valid-type]
                   "DHCP message type (ACK, or REPLY for DHCPv6: the network gave the device an address).", ("dhcp",)),
)
"""Every condition key, in the order the policy model, `explain` and the docs give them."""


def _choices(annotation: Any) -> list[str] | None:
    """The values a type allows, when it is a list of choices (a Literal or an enum)."""
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(v.value) for v in annotation]
    return None


def _value_words(annotation: Any) -> str:
    """The type of a field's value as docs/policy-fields.md gives it."""
    if get_origin(annotation) is Annotated:
        return _value_words(get_args(annotation)[0])
    if get_origin(annotation) is tuple:
        item = get_args(annotation)[0]
        choices = _choices(item)
        return "list of " + (", ".join(f"`{c}`" for c in choices) if choices else {int: "numbers", str: "text"}[item])
    choices = _choices(annotation)
    if choices:
        return " or ".join(f"`{c}`" for c in choices)
    return {bool: "`true` or `false`", int: "number"}[annotation]


def markdown() -> str:
    """docs/policy-fields.md."""
    rows = []
    for f in FIELDS:
        kinds = "every kind" if f.kinds == KINDS else ", ".join(f.kinds)
        if f.unset is not None:
            kinds += f" (`{str(f.unset).lower()}` for the others)"
        column = f"`{f.column}`" if f.column else "the window named"
        cells = (f"`{f.key}`", f.description, _value_words(f.annotation), f.match.words, column, kinds)
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join([
        "# Policy condition fields",
        "",
        "The keys a rule's `when` can test, besides `all`, `any` and `not`, which combine conditions. Several",
        "keys in one condition must all hold. This file is written by `python -m rules.fields` from",
        "`rules/fields.py`, the one definition of these keys; `tests/rules/test_fields.py` fails when the two",
        "differ.",
        "",
        "A key holds only where its column has a value: an activity of a kind that never fills the column",
        "(a DNS lookup has no file extension) does not match it, and `not` over it does. `ictwatch check`",
        "warns, with the policy file's line, about a key that none of the kinds its rule names ever fills.",
        "",
        "*Filled for* lists the observation kinds (docs/observation-fields.md) whose activities can carry a",
        "value in the column; even there it can be missing (an unregistered device has no type). The columns",
        "are the `activity` table's (`storage/schema.py`), except `personal_use_allowed`, which is worked",
        "out from the calendar and the place.",
        "",
        "| key | meaning | value | holds when | column | filled for |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    sys.stdout.write(markdown())
