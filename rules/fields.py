"""The fields a rule's condition can test, one entry each.

Every key of a condition other than `all`, `any` and `not` is a `ConditionField` in FIELDS: the key,
the activity column it reads, the type of value the policy gives, how that value is matched against
the column, the words a school reads about it, and the observation kinds that can fill the column. Each
part that deals with conditions reads this table and nothing else: the `Condition` model in
rules/policy.py (its keys, types and descriptions), the compiled expressions in rules/engine.py,
`ictwatch explain` and the explanations in reports (what an activity showed for each key, in a sentence: the
entry's `tells`), the warnings of `ictwatch check` (a key that no kind its rule names ever fills) and
docs/policy-fields.md, which `python -m rules.fields` writes.

A new field is a new entry here; when it reads a column the activity does not have yet, the column goes
into storage/schema.py and whichever step fills it (rules/identity.py, rules/engine.py, the collector).
"""

from __future__ import annotations

import datetime as dt
import sys
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, get_args, get_origin

import polars as pl
from pydantic import AfterValidator, NonNegativeInt

from collector.observation import KINDS
from collector.packet.dhcp import MESSAGE_TYPES, V6_MESSAGE_TYPES
from rules.config import DeviceType, LocationKind, Role

if TYPE_CHECKING:
    from rules.calendar import Calendar, PersonalUse, TimeRange


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


# The words a report and `explain` use for what an activity showed, one sentence part per condition key:
# true of the activity whether the rule's test held or not, and naming the rule's values where the reader
# needs them to see why it held (or did not).


class Reading(Protocol):
    """What the words need of the policy (rules.policy.Policy has both): its calendar and its reading of
    personal use."""

    @property
    def calendar(self) -> Calendar:
        """Terms, hours and breaks."""
        ...

    @property
    def personal_use(self) -> PersonalUse:
        """How clause P18 is read."""
        ...


@dataclass(frozen=True, slots=True)
class Seen:
    """What the words for a condition can draw on: one activity (its stored columns, and the calendar
    windows `rules.engine.with_windows` works out) and the policy that reads it."""

    row: Mapping[str, Any]
    policy: Reading

    def local(self) -> dt.datetime:
        """The activity's time on the school's clock."""
        ts: dt.datetime = self.row["ts"]
        return ts.astimezone(zoneinfo.ZoneInfo(self.policy.calendar.timezone))

    def clock(self) -> str:
        """The local time of day, as a school writes it (09:42)."""
        return f"{self.local():%H:%M}"

    def device(self) -> str:
        """The device as the subject of a sentence ("the device, LT-JCARTER, is …")."""
        return f"the device, {self.row['device']}," if self.row.get("device") else "the device"

    def device_name(self) -> str:
        """The device as the object of a sentence ("… knows LT-JCARTER")."""
        return self.row.get("device") or "the device"

    def place(self) -> str:
        """The place by its network-map name, or words saying it is not known."""
        return self.row.get("location") or "the place (not on the network map)"


Tells = Callable[[Any, bool, Seen], str]
"""A condition key's words: (the rule's value, whether the test held, the activity) → what the activity
showed, as a clause of a sentence."""


def _either(words: list[str], conj: str = "or") -> str:
    """`a`, `a or b`, `a, b or c`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conj} {words[-1]}"


def _hours(r: TimeRange) -> str:
    return f"{r.start:%H:%M}–{r.end:%H:%M}"


def _unknown(value: object) -> bool:
    return value is None or value == "" or value == []


def _choice(noun: Callable[[Seen], str], column: str, word: Callable[[Any], str], unknown: str,
            list_held: bool = True) -> Tells:
    """Words for a key whose column holds one of several values: `noun` is `word(value)`, and which of the
    rule's values it is not (where it held too, unless `list_held` is false)."""
    def tells(wanted: Any, held: bool, seen: Seen) -> str:
        value = seen.row.get(column)
        if _unknown(value):
            return unknown
        said = f"{noun(seen)} {word(value)}"
        choices = [word(v) for v in _plain(tuple(wanted))]
        if held:
            return said if len(choices) == 1 or not list_held else f"{said}, one of {_either(choices)}"
        return f"{said}, not {_either(choices)}"
    return tells


def _article(words: str) -> str:
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def _named(value: object) -> str:
    """A register's or directory's value (`school_ipad`) in words (`school iPad`)."""
    return str(value).replace("_", " ").replace("ipad", "iPad")


_KINDS = {
    "dns": "a DNS lookup (the device asked for a site's address)",
    "tls": "a device opening a secure (HTTPS) connection to a site",
    "quic": "a QUIC (HTTP/3) connection",
    "http": "a plain, unencrypted web request",
    "email": "an e-mail exchange",
    "dhcp": "a DHCP message (a device and the network agreeing its address)",
    "p2p": "peer-to-peer traffic",
    "flow": "a connection (the record of what it sent and received)",
    "proxy": "a web request through the school's proxy",
    "login": "a login",
    "absence": "a check that found the device had not been on the network",
}
_ROLES = {"office": "office staff", "support": "support staff"}
_PLACES = {"guest": "the guest network", "server": "a server room", "other": "another kind of place"}


def _kind(value: object) -> str:
    return _KINDS.get(str(value), f"a {value} activity")


def _role(value: object) -> str:
    return _ROLES.get(str(value)) or _article(_named(value))


def _place_kind(value: object) -> str:
    return _PLACES.get(str(value)) or _article(_named(value))


def _dhcp(value: object) -> str:
    given = " (the network gave the device an address)" if value in ("ACK", "REPLY") else ""
    return f"{_article(str(value))}{given}"


_MAIL_ENCRYPTION = {"none": "in clear (no TLS)", "starttls": "protected by TLS (STARTTLS)",
                    "implicit_tls": "protected by TLS from its first byte (implicit TLS)",
                    "unknown": "of unknown protection (the capture did not show how it began or went on)"}


def _mail_encryption(value: object) -> str:
    return _MAIL_ENCRYPTION.get(str(value), str(value))


def _quoted(names: list[str], conj: str = "or") -> str:
    return _either([f"'{_named(n)}'" for n in names], conj)


def _lists(column: str, subject: Callable[[Seen], str], what: str) -> Tells:
    """Words for a key whose column is a list (categories, groups), any of which may be named."""
    def tells(wanted: Any, held: bool, seen: Seen) -> str:
        noun = subject(seen)
        have = list(seen.row.get(column) or ())
        both = [w for w in wanted if w in have]
        if held:
            return f"{noun} in {what}{'s' if len(both) > 1 else ''} {_quoted(both, 'and')}"
        if not have:
            return f"{noun} in none of {what}s (the rule names {_quoted(list(wanted))})"
        return f"{noun} in {what}{'s' if len(have) > 1 else ''} {_quoted(have)}, not {_quoted(list(wanted))}"
    return tells


def _site(seen: Seen) -> str:
    host = seen.row.get("host")
    return f"the site, {host}, is" if host else "the site is"


def _host(wanted: Any, held: bool, seen: Seen) -> str:
    host = seen.row.get("host") or ""
    if not host:
        return "the server's name is not known"
    if held:
        (domain, *_) = [d for d in wanted if host == d or host.endswith("." + d)]
        return f"the server is {host}" if host == domain else f"the server, {host}, is under {domain}"
    return f"the server, {host}, is not {_either(list(wanted))}, nor under {'it' if len(wanted) == 1 else 'one'}"


def _port(wanted: Any, held: bool, seen: Seen) -> str:
    port = seen.row.get("dst_port")
    if port is None:
        return "no server port was seen"
    ports = [str(p) for p in wanted]
    if held:
        return f"the server's port is {port}" + (f", one of {_either(ports)}" if len(ports) > 1 else "")
    return f"the server's port is {port}, not {_either(ports)}"


def _file(wanted: Any, held: bool, seen: Seen) -> str:
    ext = seen.row.get("file_ext") or ""
    if not ext:
        return "no file download was seen"
    exts = [f".{e}" for e in wanted]
    return f"the download is a .{ext.lower()} file" + (
        (f", one of {_either(exts)}" if len(exts) > 1 else "") if held else f", not {_either(exts)}")


_STATUS_WORDS = {200: "the page or file was served", 302: "a redirect", 304: "not changed since the copy held",
                 401: "the site asked for a login", 403: "refused", 404: "not found",
                 407: "the proxy asked for a login", 511: "the network asked for a login"}


def _status(value: object) -> str:
    """An HTTP status with what it means, where that is common enough to say."""
    words = _STATUS_WORDS.get(int(value))  # type: ignore[call-overload]
    return f"{value} ({words})" if words else str(value)


def _size(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def _at_least(column: str, verb: str) -> Tells:
    def tells(least: Any, held: bool, seen: Seen) -> str:
        n = seen.row.get(column)
        if n is None and column == "bytes_out" and seen.row.get("kind") == "proxy":
            return (f"how much the device {verb} is not known: the proxy's log has no request sizes "
                    "(docs/log-formats.md)")
        if n is None:
            return f"how much the device {verb} is not known"
        return f"the device {verb} {_size(n)}, {'at least' if held else 'less than'} the {_size(least)} the rule sets"
    return tells


def _restricted(seen: Seen) -> str:
    cal = seen.policy.calendar
    if not seen.row.get("school_day"):
        return f"{_school_day(seen)}, so no hours are restricted"
    inside = "in" if seen.row.get("restricted_hours") else "outside"
    return f"{seen.clock()} is {inside} restricted hours, {_hours(cal.restricted_hours)}"


def _school_day(seen: Seen) -> str:
    cal = seen.policy.calendar
    day = seen.local().date()
    said = f"{seen.local():%A %-d %B %Y}"
    if seen.row.get("school_day"):
        return f"{said} is a school day"
    closed = [c.name or "a closure" for c in cal.closures if c.start <= day <= c.end]
    if day.weekday() >= 5:
        return f"{said} is a weekend"
    if closed:
        return f"{said} is not a school day ({closed[0]})"
    return f"{said} is not a school day (outside the terms)"


def _break(seen: Seen) -> str:
    cal = seen.policy.calendar
    clock = seen.local().time()
    now = [b for b in cal.breaks if b.start <= clock < b.end]
    if seen.row.get("break") and now:
        return f"{seen.clock()} is in {now[0].name or 'a break'}, {_hours(now[0])}"
    if not seen.row.get("school_day"):
        return f"{_school_day(seen)}, so it has no breaks"
    if not cal.breaks:
        return "the calendar has no breaks"
    breaks = [f"{b.name} {_hours(b)}" if b.name else _hours(b) for b in cal.breaks]
    return f"{seen.clock()} is not in a break ({_either(breaks, 'and')})"


_WINDOWS: dict[str, Callable[[Seen], str]] = {"school_day": _school_day, "restricted_hours": _restricted,
                                              "break": _break}


def _window(wanted: Any, held: bool, seen: Seen) -> str:
    named = [w for w in wanted if seen.row.get(w)] if held else list(wanted)
    return _either([_WINDOWS[w](seen) for w in named], "and")


def _personal_use(_wanted: Any, _held: bool, seen: Seen) -> str:
    rules = seen.policy.personal_use
    kind = seen.row.get("location_kind")
    if not seen.row.get("restricted_hours"):
        return f"personal use is allowed at this time: {_restricted(seen)}"
    at = f"{_restricted(seen)}, and "
    if not rules.allowed_locations:
        return f"personal use is not allowed at this time: {at}the policy names no place where it is"
    places = _either([_named(k) for k in rules.allowed_locations])
    if not kind:
        return f"personal use is not allowed here at this time: {at}the place is not known, so not a {places}"
    if kind not in _plain(rules.allowed_locations):
        return f"personal use is not allowed here at this time: {at}{seen.place()} is not a {places}"
    if rules.reading == "any_time":
        return f"personal use is allowed here at any time: {seen.place()} is {_place_kind(kind)}"
    if seen.row.get("break"):
        return f"personal use is allowed here at this time: {seen.place()} is {_place_kind(kind)}, and {_break(seen)}"
    return (f"personal use is not allowed here at this time: {seen.place()} is {_place_kind(kind)}, where it is "
            f"allowed only in breaks, and {_break(seen)}")


def _fact(column: str, true: str, false: str, unknown: str | None = None) -> Tells:
    """Words for a key whose column holds a flag or one of two values: what the activity showed, whatever
    the rule asked (`{device}` is the device as a subject in words, `{name}` as an object)."""
    def tells(_wanted: Any, _held: bool, seen: Seen) -> str:
        value = seen.row.get(column)
        if _unknown(value) and unknown is not None:
            return unknown
        said = true if value in (True, "school") else false
        return said.format(device=seen.device(), name=seen.device_name())
    return tells


def _known_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown activity kind {k!r}; kinds are {', '.join(KINDS)}")
    return kinds


DhcpType = Literal[tuple(sorted({*MESSAGE_TYPES.values(), *V6_MESSAGE_TYPES.values()}))]  # type: ignore[valid-type]
"""The DHCP message types the decoder names, v4 and v6."""
MailEncryption = Literal["none", "starttls", "implicit_tls", "unknown"]
"""How the decoder found a mail session protected (collector/packet/mail.py)."""
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
    tells: Tells | None = None
    """What an activity showed about this key, in a sentence a headteacher reads (see `finding`); None:
    the test's words and the column's value."""

    def holds(self, value: Any) -> pl.Expr:
        """Where this key, given `value`, holds; false where the column is null."""
        column = pl.col(self.column) if self.column is not None else pl.lit(None)
        return self.match.test(column, value).fill_null(False)

    def says(self, value: Any) -> str:
        """The test in words, for `explain`."""
        return self.match.says(self.key.replace("_", " "), value)

    def finding(self, value: Any, held: bool, seen: Seen) -> str:
        """What `seen` showed about this key, whose test with `value` held or not (`held`), as a clause of a
        sentence: "the site is in the school's list 'social networks'"."""
        if self.tells is not None:
            return self.tells(value, held, seen)
        observed = "nothing" if self.column is None else shown(seen.row.get(self.column))
        return f"{self.says(value)}: {'yes' if held else 'no'}, it is {observed}"

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
                   f"What was seen: {', '.join(KINDS)} (docs/observation-fields.md).", _EVERY,
                   tells=_choice(lambda _: "this was", "kind", _kind, "what was seen is not known", list_held=False)),
    ConditionField("category", "categories", tuple[str, ...], ANY_OF,
                   "Content categories of the host or a domain above it, of the URL or of the server's address, "
                   "from the policy's category lists.", _ADDRESSED,
                   tells=_lists("categories", _site, "the school's list")),
    ConditionField("host", "host", tuple[str, ...], UNDER, "Domains; a host matches a domain or its subdomains.",
                   _ADDRESSED, tells=_host),  # a dhcp activity's host is the name the device gave itself
    ConditionField("port", "dst_port", tuple[int, ...], NUMBER_ONE_OF, "The server's port.", _ADDRESSED, tells=_port),
    ConditionField("device_type", "device_type", tuple[DeviceType, ...], ONE_OF,
                   "The device's type in the device register.", _EVERY,
                   tells=_choice(lambda seen: f"{seen.device()} is", "device_type", lambda v: _article(_named(v)),
                                 "the device is not in the register, so its type is not known")),
    ConditionField("device_owner", "device_owner", Literal["school", "personal"], EQUALS,
                   "Whether the device is the school's or personal (from its type in the register).", _EVERY,
                   tells=_fact("device_owner", "{device} is a school device", "{device} is a personal device",
                               "the device is not in the register, so whose it is is not known")),
    ConditionField("device_registered", "device_registered", bool, EQUALS,
                   "Whether the device register knows the device.", _EVERY,
                   tells=_fact("device_registered", "the device register knows {name}",
                               "the device register does not know this device")),
    ConditionField("role", "role", tuple[Role, ...], ONE_OF, "The person's role in the staff directory.", _EVERY,
                   tells=_choice(lambda _: "the person is", "role", _role, "who it was is not known")),
    ConditionField("group", "groups", tuple[str, ...], ANY_OF,
                   "The user is in any of these directory groups, as they were at the time (stored with the "
                   "activity).", _EVERY, tells=_lists("groups", lambda _: "the person is", "the directory group")),
    ConditionField("location_kind", "location_kind", tuple[LocationKind, ...], ONE_OF,
                   "The kind of place the device was in, from the network map; for a DHCP message, where its "
                   "client is (its relay ids, the relay agent's subnet, the client's own address), never the "
                   "DHCP server's place.", _ADDRESSED,
                   tells=_choice(lambda seen: f"{seen.place()} is", "location_kind", _place_kind,
                                 "the place is not known (no part of the network map)")),
    ConditionField("window", None, tuple[Window, ...], IN_WINDOW,
                   "Holds when the activity falls in any of these named windows.", _EVERY, tells=_window),
    ConditionField("personal_use_allowed", "personal_use_allowed", bool, EQUALS,
                   "Place and time allow personal use (P18).", _EVERY, tells=_personal_use),
    ConditionField("proxy_denied", "denied", bool, EQUALS,
                   "The school's filtering refused the request (Squid's `http_access deny`, an e2guardian or "
                   "squidGuard block): a blocked attempt. Never the proxy asking for a login (407) or an error.",
                   ("proxy",), unset=False, tells=_fact("denied", "the school's filter refused the request",
                                                        "the school's filter did not refuse it")),
    ConditionField("http_status", "status", tuple[int, ...], NUMBER_ONE_OF,
                   "The HTTP status of the answer: the server's on the wire, the one the proxy logged (407: the "
                   "proxy asked for a login; 403: refused).", ("http", "proxy"),
                   tells=_choice(lambda _: "the answer's HTTP status was", "status", _status,
                                 "no HTTP status was seen")),
    ConditionField("proxy_result", "proxy_action", tuple[str, ...], ONE_OF,
                   "The proxy's result code as its log writes it: Squid's `TCP_DENIED`, `TCP_MISS`, `TCP_TUNNEL`...; "
                   "e2guardian's `DENIED` or `EXCEPTION`; squidGuard's `REDIRECT`, `DENY` or `PASS`.", ("proxy",),
                   tells=_choice(lambda _: "the proxy's result code was", "proxy_action", str,
                                 "the proxy logged no result code")),
    ConditionField("cleartext_credentials", "cleartext_credentials", bool, EQUALS,
                   "A password crossed the network readable.",
                   ("http", "email", "login"), unset=False,  # packet/apps.py, mail.py, logins.py
                   tells=_fact("cleartext_credentials", "a password crossed the network unencrypted, where anyone "
                               "on the path could read it", "no password was seen crossing the network readable")),
    ConditionField("mail_encryption", "mail_encryption", tuple[MailEncryption, ...], ONE_OF,  # type: ignore[valid-type]
                   "How an SMTP, IMAP or POP3 session was protected: `none`, in clear (read from its start, or its "
                   "commands read on the wire, and no TLS began); `starttls`, the server accepted STARTTLS and the "
                   "TLS handshake followed; `implicit_tls`, TLS from the first byte (ports 465, 993, 995, or a "
                   "ClientHello on any mail port); `unknown`, not seen well enough to say (a capture begun "
                   "mid-session, a STARTTLS accepted with nothing seen after it). Mail in clear is `[none]`; an "
                   "unknown session is never `none`, so add `unknown` only to flag the sessions that could not be "
                   "judged (`not` over this key holds for them, and for every other kind).", ("email",),
                   tells=_choice(lambda _: "the mail session was", "mail_encryption", _mail_encryption,
                                 "this was not a mail session (SMTP, IMAP or POP3)")),
    ConditionField("file_ext", "file_ext", tuple[str, ...], LOWER_ONE_OF,
                   "Extension of a downloaded file (lower case): from the URL's last path segment, or from the "
                   "content type when it names a program or package (collector/filetypes.py).",
                   ("http", "proxy"), tells=_file),
    ConditionField("bytes_out_min", "bytes_out", NonNegativeInt, _bytes_at_least("sent"),
                   "The client sent at least this many bytes. For a proxy record, the request's size: only a Squid log "
                   "in a logformat with `%>st` has it (docs/log-formats.md), else the condition never holds.",
                   ("flow", "proxy"), tells=_at_least("bytes_out", "sent")),
    ConditionField("bytes_in_min", "bytes_in", NonNegativeInt, _bytes_at_least("received"),
                   "The client received at least this many bytes.", ("flow", "proxy"),
                   tells=_at_least("bytes_in", "received")),
    ConditionField("device_status", "device_status", tuple[Literal["issued", "lost", "returned"], ...], ONE_OF,
                   "The register's status of the device on that day.", _EVERY,
                   tells=_choice(lambda seen: f"the device register records {seen.device_name()} as",
                                 "device_status", str, "the device is not in the register")),
    ConditionField("owner_left", "owner_left", bool, EQUALS, "The device's owner had left the school by then.",
                   _EVERY, tells=_fact("owner_left", "the owner of {name} had left the school by then",
                                       "the owner of {name} had not left the school")),
    ConditionField("mac_randomised", "mac_randomised", bool, EQUALS,
                   "The client used a private (randomised) Wi-Fi address.", _EVERY,
                   tells=_fact("mac_randomised", "{device} used a private (randomised) Wi-Fi address",
                               "{device} used its own hardware address, not a private Wi-Fi one")),
    ConditionField("dhcp_type", "dhcp_type", tuple[DhcpType, ...], ONE_OF,  # type: ignore[valid-type]
                   "DHCP message type (ACK, or REPLY for DHCPv6: the network gave the device an address).", ("dhcp",),
                   tells=_choice(lambda _: "the DHCP message was", "dhcp_type", _dhcp, "this was not a DHCP message",
                                 list_held=False)),
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
