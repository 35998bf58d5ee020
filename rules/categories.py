"""Content categories from lists in UT1 (squidGuard) format.

A UT1 tree has one folder per category with a `domains` file (one domain per line, matching the domain
and every subdomain) and a `usage` file listing how it may be used (`black`, `white`, or both). A host
is looked up with each of its parent domains; a match in a white list (say `sexual_education`) clears
the black categories, so a sexual-health charity listed by an adult list is not reported as pornography.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rules.config import ConfigError


class CategoryIndex:
    """Domain → our category names, built from UT1 folders via the policy's category map."""

    def __init__(self, black: dict[str, frozenset[str]], white: frozenset[str]) -> None:
        self._black = black
        self._white = white

    @classmethod
    def load(cls, root: Path, mapping: dict[str, tuple[str, ...]]) -> CategoryIndex:
        """Read the UT1 folders named in `mapping` under `root`; a missing folder is a config error."""
        black: dict[str, set[str]] = {}
        white: set[str] = set()
        for ours, dirs in mapping.items():
            for name in dirs:
                folder = root / name
                if not (folder / "domains").is_file():
                    raise ConfigError(root, f"categories.map.{ours}", name, "no UT1 list with a domains file")
                is_white = _usage(folder) == "white"
                for domain in _domains(folder / "domains"):
                    if is_white:
                        white.add(domain)
                    else:
                        black.setdefault(domain, set()).add(ours)
        return cls({d: frozenset(c) for d, c in black.items()}, frozenset(white))

    def lookup(self, host: str | None) -> list[str]:
        """Our categories for `host` (sorted), from the host and each parent domain."""
        if not host:
            return []
        host = host.lower().rstrip(".")
        found: set[str] = set()
        labels = host.split(".")
        for i in range(len(labels)):
            domain = ".".join(labels[i:])
            if domain in self._white:
                return []
            found |= self._black.get(domain, frozenset())
        return sorted(found)

    def annotate(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add a `categories` list column, looking each distinct host up once."""
        hosts = df.get_column("host").unique().drop_nulls()
        table = pl.DataFrame(
            {"host": hosts, "categories": [self.lookup(h) for h in hosts]},
            schema={"host": pl.String, "categories": pl.List(pl.String)},
        )
        out = df.join(table, on="host", how="left", maintain_order="left")
        return out.with_columns(pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def _usage(folder: Path) -> str:
    usage = folder / "usage"
    if not usage.is_file():
        return "black"
    # `usage` lists the ways a list may be used: "black white" (webmail, chat) means either, so only a
    # list that offers "white" and not "black" (sexual_education) is a white list.
    words = usage.read_text(encoding="utf-8", errors="replace").split()
    return "white" if "white" in words and "black" not in words else "black"


def _domains(path: Path) -> list[str]:
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            d = line.strip().lower().rstrip(".")
            if d and not d.startswith("#"):
                out.append(d)
    return out
