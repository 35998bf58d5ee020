"""Content categories from lists in UT1 (squidGuard) format, held as sorted 64-bit hashes.

A UT1 tree has one folder per category with a `domains` file (one domain per line, matching the domain
and every subdomain), often a `urls` file (`host/path` prefixes, matched against URLs seen in clear or
in the proxy log), sometimes an `expressions` file (regular expressions over the URL) and a `usage` file
listing how it may be used (`black`, `white`, or both). A host is looked up with itself and each parent
domain; a match in a white list (say `sexual_education`) clears the black categories, so a sexual-health
charity listed by an adult list is not reported as pornography. Parents stop above the public suffix
(the Public Suffix List, shipped offline by the `publicsuffixlist` package): `co.uk` in a list does not
put every British site in its category.

The structure, and why. The full UT1 set holds about five million domains, most of them `adult`. As
Python strings in a set or dict that is well over 100 bytes an entry and a minute of interpreter work to
load. Here every listed domain becomes a 58-bit hash, computed by polars (Rust) as the file streams past, kept
in a sorted numpy array beside an array of category bits (one bit per category of ours, the top bit for
"white"). Five million entries take 80 MB; loading is column work (read, hash, sort in place, merge
duplicates); a batch of hosts is looked up at once, every candidate domain of every host by binary
search (`numpy.searchsorted`), the public-suffix rules too. A wrong match needs another name with the
same 58-bit hash: about one chance in 5 x 10^10 per lookup against five million entries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
import publicsuffixlist

from rules.config import ConfigError

_SEED = 0x1C7A7C4  # the same seed for lists and lookups: hashes are compared within one process only
_BIT_WIDTH = 6  # low bits of a packed entry: which list bit it carries (0-62 ours, 63 white)
_WHITE_BIT = 63
HOSTS_KEPT = 20_000
"""How many hosts' list bits an index keeps between batches (about 3 MB); past it they are forgotten."""
_log = logging.getLogger(__name__)


def _hashes(domains: pl.Series) -> np.ndarray:
    """58-bit hashes of domain names (lower case, no leading or trailing dot), as uint64."""
    return domains.hash(_SEED).to_numpy() >> _BIT_WIDTH


class _Sorted:
    """Hashes to look up, kept with their sorted order: each set is searched in that order, so a search
    starts where the last ended and walks memory the cache has just seen (six times faster than in
    arrival order against five million keys), and the sort is paid once for all the sets."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = hashes
        self._order = np.argsort(hashes)
        self._sorted = hashes[self._order]

    def find(self, sorted_keys: np.ndarray) -> np.ndarray:
        """Where each hash is in `sorted_keys` (an index), or -1."""
        if not len(sorted_keys):
            return np.full(len(self.hashes), -1)
        at = np.empty(len(self.hashes), np.intp)
        at[self._order] = np.searchsorted(sorted_keys, self._sorted)
        np.minimum(at, len(sorted_keys) - 1, out=at)
        return np.where(sorted_keys[at] == self.hashes, at, -1)


@functools.cache
def _public_suffixes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PSL's rules as three sorted hash sets: exact suffixes, parents of `*.` rules, `!` exceptions.
    Read once per process: every index (a reload, a test) shares them."""
    path = Path(publicsuffixlist.__file__).with_name("public_suffix_list.dat")
    exact, wild, exceptions = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        rule = line.strip().lower()
        if not rule or rule.startswith("//"):
            continue
        if not rule.isascii():  # names on the wire (DNS, SNI) are in their ASCII (punycode) form
            try:
                rule = ".".join(label if label in ("*", "!") else label.encode("idna").decode("ascii")
                                for label in rule.split("."))
            except UnicodeError:
                continue
        if rule.startswith("!"):
            exceptions.append(rule[1:])
        elif rule.startswith("*."):
            wild.append(rule[2:])
        else:
            exact.append(rule)
    exact_h, wild_h, exception_h = (np.unique(_hashes(pl.Series(r, dtype=pl.String)))
                                    for r in (exact, wild, exceptions))
    return exact_h, wild_h, exception_h


class CategoryIndex:
    """Domain → our category names, built from UT1 folders via the policy's category map."""

    def __init__(self, names: tuple[str, ...], keys: np.ndarray, bits: np.ndarray,
                 url_hosts: np.ndarray | None = None) -> None:
        self.names = names
        """Our category names, in bit order."""
        self._keys = keys
        self._bits = bits
        self._url_hosts = np.zeros(0, np.uint64) if url_hosts is None else url_hosts
        """Hashes of the hosts that `urls` entries name: only URLs on these hosts are looked up."""
        self.sources: dict[str, tuple[str, ...]] = {}
        """Our category name → the UT1 folders that were read for it."""
        self.expressions: tuple[tuple[int, str], ...] = ()
        """(list bit, one regular expression joining a list's `expressions` file), matched against URLs."""
        self._host_cache: dict[str | None, int] = {}
        """Host → its list bits (`_host_bits`), for the hosts of the batches annotated so far."""

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def empty(cls) -> CategoryIndex:
        """An index of no lists, for an engine that only explains stored activity: a stored row carries the
        categories it was judged with, so explaining it never reads the lists."""
        return cls((), np.zeros(0, np.uint64), np.zeros(0, np.uint64))

    @classmethod
    def load(cls, root: Path, mapping: Mapping[str, tuple[str, ...]],
             defaults: Mapping[str, tuple[str, ...]] | None = None) -> CategoryIndex:
        """Read the UT1 folders named in `mapping` under `root` (a missing one is a config error) and
        those in `defaults` that are present (the UK SIC table's lists: a set need not have them all).

        Each entry is one word while loading: the domain's 58-bit hash above the number of its list's
        bit (six bits), so the lists are sorted together in place, with no second array to carry along;
        runs of one hash are then merged into one key and the OR of their bits."""
        defaults = {k: v for k, v in (defaults or {}).items() if k not in mapping}
        names = tuple(sorted({*mapping, *defaults}))
        if len(names) > _WHITE_BIT:
            raise ConfigError(root, "categories.map", len(names), f"at most {_WHITE_BIT} categories")
        packed, url_hosts, expressions = [], [], []
        sources: dict[str, tuple[str, ...]] = {}
        for bit, ours in enumerate(names):
            folders = mapping.get(ours) or tuple(d for d in defaults[ours] if (root / d / "domains").is_file())
            sources[ours] = folders
            for name in folders:
                folder = root / name
                if not (folder / "domains").is_file():
                    raise ConfigError(root, f"categories.map.{ours}", name, "no UT1 list with a domains file")
                list_bit = _WHITE_BIT if _usage(folder) == "white" else bit
                for listed in ("domains", "urls"):  # `host/path` never equals a domain: one index holds both
                    if listed == "urls":
                        if not (folder / "urls").is_file():
                            continue
                        url_hosts.append(_domain_hashes(folder / "urls", urls=True, host_only=True))
                    hashes = _domain_hashes(folder / listed, urls=listed == "urls")
                    hashes &= ~np.uint64((1 << _BIT_WIDTH) - 1)  # the 58-bit hash of `_hashes`, shifted up
                    hashes |= np.uint64(list_bit)
                    packed.append(hashes)
                pattern = _expressions(folder / "expressions")
                if pattern:
                    expressions.append((list_bit, pattern))
        words = np.concatenate(packed) if packed else np.zeros(0, np.uint64)
        del packed
        words.sort()
        keys = words >> _BIT_WIDTH
        words &= np.uint64((1 << _BIT_WIDTH) - 1)
        bits = np.left_shift(np.uint64(1), words)
        del words
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.intp)
        merged = np.bitwise_or.reduceat(bits, starts) if len(starts) else bits
        hosts = np.unique(np.concatenate(url_hosts)) >> _BIT_WIDTH if url_hosts else None
        index = cls(names, keys[starts], merged, hosts)
        index.sources = sources
        index.expressions = tuple(expressions)
        return index

    def lookup_many(self, hosts: pl.Series) -> pl.Series:
        """Our categories (a sorted list, empty when none) for each host, in order; one pass for all."""
        return self._names(self._host_bits(hosts))

    def _known_host_bits(self, hosts: pl.Series) -> np.ndarray:
        """`_host_bits`, each host worked out once while the index lasts: the same hosts come batch after
        batch, and a look-up costs about as much for three hosts as for three hundred (a dozen steps per
        level of the names)."""
        names = hosts.to_list()
        new = list(dict.fromkeys(h for h in names if h not in self._host_cache))
        if new:
            if len(self._host_cache) + len(new) > HOSTS_KEPT:
                self._host_cache.clear()
            self._host_cache.update(zip(new, self._host_bits(pl.Series(new, dtype=pl.String)).tolist(), strict=True))
        return np.fromiter((self._host_cache[h] for h in names), np.uint64, len(names))

    def _host_bits(self, hosts: pl.Series) -> np.ndarray:
        """The OR of the list bits of each host's candidates.

        The host is the first candidate; each next one drops the leading label (one pattern replacement per
        host and level, on the hosts that still have a dot). A candidate that is a public suffix (an exact
        PSL rule, or a label under a `*.` rule that no `!` rule excepts) is not looked up."""
        level = hosts.cast(pl.String).str.to_lowercase().str.strip_chars(".").fill_null("")
        mask = np.zeros(len(level), np.uint64)
        rows = np.arange(len(level))
        here = _Sorted(_hashes(level))
        # the public suffixes are read at the first look-up: an index that only explains stored rows (a
        # report's) never needs them, and reading them costs a command 0.1 s
        exact, wild, exceptions = _public_suffixes()
        while len(level):
            more = level.str.contains(".", literal=True)
            keep = more.to_numpy()
            # by pattern, not by `find` and `slice`: polars 2.1's `find` counts bytes where `slice` counts
            # characters, so a name with a multi-byte character lost its parents there
            parent = level.filter(more).str.replace(r"^[^.]*\.", "")
            above = _Sorted(_hashes(parent))
            under_wild = np.zeros(len(level), bool)
            under_wild[keep] = above.find(wild) >= 0
            public = (here.find(exact) >= 0) | (under_wild & (here.find(exceptions) < 0))
            at = here.find(self._keys)
            hit = (at >= 0) & ~public & (level != "").to_numpy()
            mask[rows[hit]] |= self._bits[at[hit]]  # a host is once in a level: no repeated index
            level, rows, here = parent, rows[keep], above
        return mask

    def _url_bits(self, urls: pl.Series) -> np.ndarray:
        """The OR of the list bits of each URL's candidates, as UT1 `urls` lists are matched: the URL
        without scheme, credentials, port, query, a leading `www.` and a trailing slash (`host/a/b`), then
        each shorter prefix at a `/` (`host/a`); the bare host is left to the domain lookup."""
        level = (urls.cast(pl.String).str.to_lowercase().str.replace(r"^[a-z][a-z0-9+.\-]*://", "")
                 .str.replace(r"[?#].*$", "").str.replace(r"^[^/@]*@", "").str.replace(r"^([^/:]*):\d*", "$1")
                 .str.replace(r"^www\.", "").str.strip_chars_end("/").fill_null(""))
        mask = np.zeros(len(level), np.uint64)
        rows = np.arange(len(level))
        on_listed_host = _Sorted(_hashes(level.str.extract(r"^([^/]*)", 1).fill_null(""))).find(self._url_hosts) >= 0
        level, rows = level.filter(pl.Series(on_listed_host, dtype=pl.Boolean)), rows[on_listed_host]
        while len(level):
            has_path = level.str.contains("/", literal=True).to_numpy()
            level, rows = level.filter(pl.Series(has_path, dtype=pl.Boolean)), rows[has_path]
            if not len(level):
                break
            at = _Sorted(_hashes(level)).find(self._keys)
            hit = at >= 0
            mask[rows[hit]] |= self._bits[at[hit]]
            level = level.str.replace(r"/[^/]*$", "")
        return mask

    def _expression_bits(self, hosts: pl.Series, urls: pl.Series | None) -> np.ndarray:
        """The bits of the lists whose `expressions` match each URL (lower case, without its scheme), or
        the host where there is no URL: squidGuard matches a CONNECT request's `host:port` the same way."""
        target = hosts.cast(pl.String).str.to_lowercase()
        if urls is not None:
            bare = urls.cast(pl.String).str.to_lowercase().str.replace(r"^[a-z][a-z0-9+.\-]*://", "")
            target = pl.select(pl.coalesce(bare, target)).to_series()
        target = target.fill_null("")
        mask = np.zeros(len(target), np.uint64)
        for bit, pattern in self.expressions:
            mask[target.str.contains(pattern).fill_null(False).to_numpy()] |= np.uint64(1 << bit)
        return mask

    def _names(self, mask: np.ndarray) -> pl.Series:
        """Category name lists for bit masks: empty where the white bit is set."""
        codes, inverse = np.unique(mask, return_inverse=True)
        white = np.uint64(1 << _WHITE_BIT)
        names = [[] if code & white else [n for b, n in enumerate(self.names) if int(code) >> b & 1]
                 for code in codes]
        return pl.Series("categories", names, dtype=pl.List(pl.String)).gather(inverse)

    def annotate(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add a `categories` list column, looking each distinct host, and each distinct (host, URL) pair
        that has a URL, up once. A URL list's categories add to the host's; so do those of the server's
        address (`dst_ip`) where a list names it (UT1's lists hold bare addresses; a list of Tor relays is
        nothing else); a white match in any clears them all."""
        # URLs only count where a URL list names their host or an expression may match them: without
        # either, each distinct host is looked up once (URLs are nearly all distinct; hosts are few).
        by_url = "url" in df.columns and (len(self._url_hosts) > 0 or bool(self.expressions))
        keys = ["host", "url"] if by_url else ["host"]
        if "dst_ip" in df.columns and len(self._keys):
            keys.append("dst_ip")
        # each distinct key is worked out once and its names joined on in one step: every step costs a
        # small batch about as much as a big one
        found = df.select(keys).unique()
        bits = self._known_host_bits(found.get_column("host"))
        if "url" in keys and len(self._url_hosts):
            bits = bits | self._url_bits(found.get_column("url"))
        if self.expressions:
            bits = bits | self._expression_bits(found.get_column("host"),
                                                found.get_column("url") if "url" in keys else None)
        if "dst_ip" in keys:
            addresses = found.get_column("dst_ip")
            at = _Sorted(_hashes(addresses)).find(self._keys)  # an address is listed as itself: no parents
            bits = bits | np.where((at >= 0) & addresses.is_not_null().to_numpy(), self._bits[at], 0)
        return df.join(found.with_columns(self._names(bits)), on=keys, how="left", nulls_equal=True,
                       maintain_order="left")


def _expressions(path: Path) -> str:
    """A UT1 `expressions` file (squidGuard's expressionlist: one POSIX extended regular expression per
    line) as one case-insensitive pattern, or "" when there is none. A line the regular expression engine
    refuses (backreferences, say) is skipped and logged with its line number: one bad line in a list
    from outside must not cost the school the rest of its filtering."""
    if not path.is_file():
        return ""
    kept = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            pl.Series([""]).str.contains(line)
        except pl.exceptions.ComputeError:
            _log.warning("%s:%d: expression skipped, not a regular expression this engine takes", path, number)
            continue
        kept.append(f"(?:{line})")
    return "(?i)" + "|".join(kept) if kept else ""


def _usage(folder: Path) -> str:
    usage = folder / "usage"
    if not usage.is_file():
        return "black"
    # `usage` lists the ways a list may be used: "black white" (webmail, chat) means either, so only a
    # list that offers "white" and not "black" (sexual_education) is a white list.
    words = usage.read_text(encoding="utf-8", errors="replace").split()
    return "white" if "white" in words and "black" not in words else "black"


def _domain_hashes(path: Path, urls: bool = False, host_only: bool = False) -> np.ndarray:
    """Hashes of the names in a UT1 `domains` (or, with `urls`, `urls`) file, normalised as hosts and URLs
    are looked up (lower case, no surrounding dots; URL entries without a leading `www.`); comments and
    blank lines dropped; with `host_only`, of each entry's part before its first `/`. The file is
    streamed through polars a piece at a time, so only the hashes are ever held whole, not the names."""
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint64)
    lines = pl.scan_csv(path, has_header=False, separator="\x00", quote_char=None, new_columns=["d"],
                        schema={"d": pl.String}, encoding="utf8-lossy")
    name = pl.col("d").str.strip_chars().str.to_lowercase().str.strip_chars(".")
    kept = lines.select(name).filter(name.is_not_null() & (name != "") & ~name.str.starts_with("#"))
    if urls:
        kept = kept.select(pl.col("d").str.replace(r"^www\.", ""))
    if host_only:
        kept = kept.select(pl.col("d").str.extract(r"^([^/]*)", 1))
    return kept.select(pl.col("d").hash(_SEED)).collect(engine="streaming").to_series().to_numpy(writable=True)
