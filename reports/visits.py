"""Visits: a person's recorded activities (a DNS lookup, a TLS hello, a proxied request, the flows) joined
into what they would call one visit to one site, and the traffic to the school's own network services set
apart from them.

A visit is one device's activities to one site that follow each other with no gap longer than `VISIT_GAP`
between the end of the ones so far and the start of the next (the arithmetic is rules/visits.py's, shared
with the rules that count time). The site is the host name the activity carries (DNS question, TLS server
name, HTTP host, proxy URL host); a flow that carries only an address takes the name from the device's
latest DNS answer for that address within `DNS_NAME_AGE`, else it is the address; a row carries its visit
on for at most `VISIT_GAP` past its start, however long it stayed open. An activity to a network service
address (the network map's `services`) that names no site itself, every DHCP message or flow, and nameless
broadcasts and multicast, are the network's upkeep: counted by service, in no visit. A judged activity (a
breach, a waiver, a refusal) is always in a visit, whatever its address.

Everything here works on whole frames (polars), so a month of a busy person's rows costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from rules.visits import END, WHO, starts_visit

VERDICTS = ("allowed", "waived", "blocked", "breach")
"""Verdicts from mildest to worst: a visit has its worst activity's."""

SEVERITIES = ("", "advisory", "caution", "danger")
"""Severities from none to the highest."""

DHCP_SERVICE = "DHCP (joining the network)"
"""How the services summary names DHCP messages and flows sent to no listed service address (broadcasts)."""
DHCP_PORTS = (67, 68, 546, 547)
"""DHCP's and DHCPv6's UDP ports: a nameless flow to one is a device asking for its address."""
LOCAL_SERVICE = "Broadcasts and multicast on the school network (devices finding each other)"
"""How the services summary names nameless traffic to a broadcast or multicast address, which leaves no site."""


def _local_only(dst: pl.Expr) -> pl.Expr:
    """The address is the limited broadcast or multicast (224.0.0.0/4, ff00::/8): it reaches the local network,
    never a site."""
    first = dst.str.split(".").list.first().cast(pl.Int32, strict=False)
    return (dst == "255.255.255.255") | first.is_between(224, 239) | dst.str.to_lowercase().str.starts_with("ff")

_NO_SITE = {"absence": "(not seen on the network)", "dhcp": "(joining the network)"}
"""The site of a row that names none; a DHCP message's host is the name the device gave itself, not a site."""

DNS_NAME_AGE = "10m"
"""How old a device's DNS answer may be and still name a flow to that address; an older one (a shared CDN
address looked up hours before for another site) leaves the flow named by its address."""


def _name(col: str) -> pl.Expr:
    return pl.col(col).fill_null("").str.strip_chars_end(".").str.to_lowercase()


def sites(df: pl.DataFrame) -> pl.DataFrame:
    """`df` (stored activity, in time order) with `who` (the device, or the client address of an unregistered
    one) and `name` (the host name; for a row with an address only, the device's latest DNS answer for it
    within `DNS_NAME_AGE`)."""
    df = df.with_columns(who=WHO, name=_name("host"))
    answers = (df.filter((pl.col("kind") == "dns") & (pl.col("name") != "") & (pl.col("answers").list.len() > 0))
               .select("who", "ts", dns_name="name", ip="answers").explode("ip").sort("ts"))
    nameless = df.with_row_index("_r").filter((pl.col("name") == "") & (pl.col("dst_ip").fill_null("") != ""))
    if answers.height == 0 or nameless.height == 0:
        return df
    named = nameless.select("_r", "who", "ts", "dst_ip").sort("ts").join_asof(
        answers, on="ts", by_left=["who", "dst_ip"], by_right=["who", "ip"], strategy="backward",
        tolerance=DNS_NAME_AGE, check_sortedness=False)  # both sorted by ts just above
    found = df.with_row_index("_r").join(named.select("_r", "dns_name"), on="_r", how="left")
    return found.with_columns(name=pl.coalesce(pl.col("dns_name"), pl.col("name"))).drop("_r", "dns_name")


def assign(df: pl.DataFrame, services: Mapping[str, str]) -> pl.DataFrame:
    """`sites(df)` with `site`, `service` (the network service it went to, else null) and `visit` (the visit's
    number, 1 for the earliest; null for a service's traffic and for an absence), in the original row order."""
    df = sites(df).with_row_index("_r")
    dst = pl.col("dst_ip").fill_null("")
    # what the row itself names, before a DNS answer names it: a lookup of proxy.school.lan does not make the
    # connections to the proxy browsing
    nameless, allowed = _name("host") == "", pl.col("verdict") == "allowed"
    dhcp = (pl.col("kind") == "dhcp") | (nameless & (pl.col("proto") == "udp") & pl.col("dst_port").is_in(DHCP_PORTS))
    df = df.with_columns(
        service=pl.when(allowed & nameless & dst.is_in(list(services)))
        .then(dst.replace_strict(dict(services), default=None, return_dtype=pl.String))
        .when(allowed & dhcp).then(pl.lit(DHCP_SERVICE))
        .when(allowed & nameless & _local_only(dst)).then(pl.lit(LOCAL_SERVICE)),
        site=pl.when(pl.col("kind") == "dhcp").then(pl.lit(_NO_SITE["dhcp"]))
        .when(pl.col("name") != "").then("name").when(dst != "").then(dst)
        .otherwise(pl.col("kind").replace_strict(_NO_SITE, default="(no server named)")),
        end=END,
    )
    # an iPad not seen by its time is a finding about the device, not time anyone spent online
    ordered = df.filter(pl.col("service").is_null() & (pl.col("kind") != "absence")).sort("who", "site", "ts")
    ordered = ordered.with_columns(_g=starts_visit(["who", "site"]).cum_sum())
    numbers = (ordered.group_by("_g").agg(pl.col("ts").min(), pl.col("who").first(), pl.col("site").first())
               .sort("ts", "who", "site").with_row_index("visit", offset=1).select("_g", "visit"))
    ordered = ordered.join(numbers, on="_g").select("_r", "visit")
    return df.join(ordered, on="_r", how="left").sort("_r").drop("_r")


def summarise(rows: pl.DataFrame, tz: str) -> pl.DataFrame:
    """One row per visit of `assign`'s rows (those with a visit number), in number order: start, end (in
    `tz`), device, place, counts, kinds, categories, worst verdict, rules, clauses, severity, evidence, and
    the full URLs seen (plain HTTP, proxied requests; a CONNECT's host and port is not one)."""
    rank = {v: i for i, v in enumerate(VERDICTS)}
    sev = {v: i for i, v in enumerate(SEVERITIES)}
    ordered = rows.filter(pl.col("visit").is_not_null()).sort("visit", "ts", maintain_order=True)
    visits = ordered.group_by("visit", maintain_order=True).agg(
        pl.col("site").first(),
        start=pl.col("ts").min().dt.convert_time_zone(tz),
        end=pl.col("end").max().dt.convert_time_zone(tz),
        device=pl.col("device").first(), device_type=pl.col("device_type").first(),
        location=pl.col("location").first(),
        activities=pl.len(),
        bytes=(pl.col("bytes_in").fill_null(0) + pl.col("bytes_out").fill_null(0)).sum(),
        kinds=pl.col("kind").unique(maintain_order=True),
        categories=pl.col("categories").explode().drop_nulls().unique().sort(),
        verdict=pl.col("verdict").replace_strict(rank, default=0).max(),
        rule_ids=pl.col("rule_ids").explode().drop_nulls().unique(maintain_order=True),
        clauses=pl.col("clauses").explode().drop_nulls().unique().sort(),
        severity=pl.col("severity").fill_null("").replace_strict(sev, default=0).max(),
        evidence=pl.format("{} {}", "kind", "source_ref"),
        urls=pl.col("url").filter(pl.col("url").fill_null("").str.contains("://", literal=True))
        .unique(maintain_order=True),
    )
    return visits.with_columns(
        verdict=pl.col("verdict").replace_strict(dict(enumerate(VERDICTS)), return_dtype=pl.String),
        severity=pl.col("severity").replace_strict(dict(enumerate(SEVERITIES)), return_dtype=pl.String),
    )


def minutes(visits: pl.DataFrame) -> pl.DataFrame:
    """(visit, minute): each minute of the clock (in the visits' zone) in which a visit was under way, from
    the minute it started to the minute it ended; so a visit of a few seconds has one."""
    if visits.height == 0:
        return pl.DataFrame(schema={"visit": pl.UInt32, "minute": visits.schema["start"]})
    return visits.select(
        "visit", minute=pl.datetime_ranges(pl.col("start").dt.truncate("1m"), pl.col("end").dt.truncate("1m"), "1m"),
    ).explode("minute")
