"""Names for flows that come without one: Suricata's flow events and the kernel's conntrack records carry
addresses only (the native decoder names its own flows from the SNI, Host or DNS answer it saw), so a
consumer of observation frames remembers which name each address was a DNS answer for and gives it to
the unnamed flows to that address."""

from __future__ import annotations

import polars as pl

_NAMES_KEPT = 200_000
"""How many addresses are remembered before the memory starts again (it is a cache, not a history)."""


def name_flows(df: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """Learn address → name from the frame's DNS answers into `names`, and name the frame's unnamed
    Suricata and conntrack flows from it."""
    answers = df.filter((pl.col("kind") == "dns") & pl.col("host").is_not_null()).select("host", "answers")
    if answers.height:
        if len(names) > _NAMES_KEPT:
            names.clear()
        for host, address in answers.explode("answers").drop_nulls().iter_rows():
            names[address] = host
    unnamed = (pl.col("kind") == "flow") & pl.col("host").is_null() & pl.col("source").is_in(["conntrack", "suricata"])
    if not names or df.filter(unnamed).height == 0:
        return df
    return df.with_columns(host=pl.when(unnamed).then(
        pl.col("dst_ip").replace_strict(names, default=None, return_dtype=pl.String)).otherwise(pl.col("host")))
