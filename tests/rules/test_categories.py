"""Category lookup in UT1 lists: parent domains, and white lists beating black ones."""

from __future__ import annotations

import polars as pl

from rules.categories import CategoryIndex
from tests.conftest import SCHOOL_DAY, UT1, need


def lookup(idx: CategoryIndex, host: str | None) -> list[str]:
    """The categories the engine gives an activity with this host: `annotate` on a batch of one."""
    batch = pl.DataFrame({"host": [host]}, schema={"host": pl.String})
    return idx.annotate(batch).get_column("categories")[0].to_list()


def bundled() -> CategoryIndex:
    return CategoryIndex.load(SCHOOL_DAY / "categories", {
        "pornography": ("adult",), "social_networks": ("social_networks",), "sexual_education": ("sexual_education",),
    })


def test_host_and_every_parent_domain():
    idx = bundled()
    assert lookup(idx, "www.instagram.com") == ["social_networks"]
    assert lookup(idx, "Scontent.CDN.Instagram.com.") == ["social_networks"]
    assert lookup(idx, "notinstagram.com") == []
    assert lookup(idx, None) == []


def test_a_label_with_multibyte_characters_keeps_its_parents():
    """A name off the wire need not be ASCII (a hostile SNI or CONNECT host): its parents are still found,
    however many bytes its characters take (polars 2.1 lost them: its `find` counted bytes, `slice` chars)."""
    idx = bundled()
    assert lookup(idx, "\u202e\x1b[31mwww.instagram.com") == ["social_networks"]
    assert lookup(idx, "ñandú.é.instagram.com") == ["social_networks"]
    assert lookup(idx, "instagram.ñandú") == []


def test_white_list_clears_black():
    idx = bundled()
    assert lookup(idx, "hot-videos.example") == ["pornography"]
    assert lookup(idx, "www.brook.org.uk") == []  # listed in adult, cleared by sexual_education (white)


def test_annotate_adds_a_list_per_row():
    df = pl.DataFrame({"host": ["www.facebook.com", None, "example.org", "www.facebook.com"]})
    out = bundled().annotate(df)
    assert out.get_column("categories").to_list() == [["social_networks"], [], [], ["social_networks"]]


def test_real_ut1_lists():
    root = need(UT1)
    idx = CategoryIndex.load(root, {"social_networks": ("social_networks",), "webmail": ("webmail",),
                                    "sexual_education": ("sexual_education",), "vpn": ("vpn",)})
    first_social = next(line.strip() for line in (root / "social_networks" / "domains").open() if line.strip())
    assert lookup(idx, "www." + first_social) == ["social_networks"]
    assert lookup(idx, "10minutemail.com") == ["webmail"]  # second line of UT1's webmail list
    for line in (root / "sexual_education" / "domains").open():
        assert lookup(idx, line.strip()) == []


def _tree(tmp_path, lists: dict[str, str]):
    for name, text in lists.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "domains").write_text(text)
    return tmp_path


def test_parents_stop_above_the_public_suffix(tmp_path):
    """A list naming `co.uk` or `ck` (public suffixes, one by a `*.ck` rule) does not tag every site under
    them; `www.ck` is an exception to `*.ck` in the PSL, so it is a registrable name and matches."""
    root = _tree(tmp_path, {"adult": "co.uk\nexample.co.uk\nfoo.ck\nwww.ck\n"})
    idx = CategoryIndex.load(root, {"pornography": ("adult",)})
    assert lookup(idx, "www.bbc.co.uk") == []
    assert lookup(idx, "a.b.example.co.uk") == ["pornography"]
    assert lookup(idx, "bar.foo.ck") == []  # foo.ck is a public suffix (*.ck)
    assert lookup(idx, "www.ck") == ["pornography"]


def test_batch_lookup_keeps_order_and_merges_lists(tmp_path):
    root = _tree(tmp_path, {"adult": "# comment\n\nBad.Example.\n", "gambling": "bad.example\nbet.example\n",
                            "empty": ""})
    idx = CategoryIndex.load(root, {"pornography": ("adult",), "gambling": ("gambling",), "other": ("empty",)})
    assert len(idx) == 2  # bad.example is one entry carrying two categories
    got = idx.lookup_many(pl.Series(["x.bad.example", None, "bet.example", "", "x.bad.example", "nope.example"]))
    assert got.to_list() == [["gambling", "pornography"], [], ["gambling"], [], ["gambling", "pornography"], []]


def test_agrees_with_a_plain_reference_on_real_lists():
    """The hashed index against a reference built the obvious way (Python sets, and the publicsuffixlist
    package's own `is_public`) on every domain of the real UT1 sample, as listed, under `www.`, under a
    new subdomain, and with the first label changed (mostly unlisted)."""
    from publicsuffixlist import PublicSuffixList

    root = need(UT1)
    lists = sorted(p.parent.name for p in root.glob("*/domains"))
    mapping = {name: (name,) for name in lists}
    idx = CategoryIndex.load(root, mapping)
    psl = PublicSuffixList()
    sets = {}
    white = set()
    for name in lists:
        names = {d.strip().lower().strip(".") for d in (root / name / "domains").open(errors="replace")}
        names = {d for d in names if d and not d.startswith("#")}
        usage = (root / name / "usage").read_text().split() if (root / name / "usage").exists() else ["black"]
        if "white" in usage and "black" not in usage:
            white |= names
        else:
            sets[name] = names

    def reference(host: str) -> list[str]:
        labels = host.split(".")
        found: set[str] = set()
        for i in range(len(labels)):
            cand = ".".join(labels[i:])
            if psl.is_public(cand):
                continue
            if cand in white:
                return []
            found |= {name for name, names in sets.items() if cand in names}
        return sorted(found)

    hosts = []
    for name in lists:
        for d in sorted(sets.get(name, white))[:1500]:
            hosts += [d, "www." + d, "cdn.x." + d, "z" + d]
    got = idx.lookup_many(pl.Series(hosts)).to_list()
    assert got == [reference(h) for h in hosts]
    assert sum(1 for g in got if g) > len(hosts) // 2  # most are listed: the comparison is not of empties


def test_url_lists_match_path_prefixes(tmp_path):
    """UT1 `urls` entries are `host/path` prefixes, matched at `/` boundaries on the URL without scheme,
    credentials, port, query or a leading `www.`; a white URL clears the host's categories too."""
    root = _tree(tmp_path, {"social_networks": "facebook.com\n", "adult": "badsite.example\n",
                            "sexual_education": ""})
    (root / "social_networks" / "urls").write_text("www.epicurious.com/community\n")  # listed with its www.
    (root / "sexual_education" / "urls").write_text("badsite.example/health\n")
    (root / "sexual_education" / "usage").write_text("white\n")
    idx = CategoryIndex.load(root, {"social_networks": ("social_networks",), "pornography": ("adult",),
                                    "sexual_education": ("sexual_education",)})
    rows = [("www.epicurious.com", "https://www.epicurious.com/community/recipes?page=2", ["social_networks"]),
            ("www.epicurious.com", "http://user@WWW.Epicurious.com:8080/community", ["social_networks"]),
            ("www.epicurious.com", "https://www.epicurious.com/communityx", []),  # not at a `/` boundary
            ("www.epicurious.com", "https://www.epicurious.com/recipes", []),
            ("epicurious.com", None, []),
            ("badsite.example", "http://badsite.example/health/contraception", []),  # white URL
            ("badsite.example", "http://badsite.example/videos", ["pornography"]),
            ("m.facebook.com", "https://m.facebook.com/groups", ["social_networks"])]
    df = pl.DataFrame({"host": [r[0] for r in rows], "url": [r[1] for r in rows]})
    assert idx.annotate(df).get_column("categories").to_list() == [r[2] for r in rows]


def test_real_ut1_url_list():
    root = need(UT1)
    idx = CategoryIndex.load(root, {"violence": ("agressif",)})
    entry = next(line.strip() for line in (root / "agressif" / "urls").open() if line.strip())
    host = entry.split("/")[0]
    df = pl.DataFrame({"host": [host, host], "url": [f"http://{entry}/index.html", f"http://{host}/elsewhere"]})
    assert idx.annotate(df).get_column("categories").to_list()[0] == ["violence"]


def test_expressions_match_urls_and_hosts(tmp_path, caplog):
    """A list's `expressions` (squidGuard's expressionlist) are regular expressions over the URL without
    its scheme, or the host where there is no URL, case-insensitive. A line the engine cannot take (a
    backreference) is skipped with its line number logged, and the rest of the list still works."""
    root = _tree(tmp_path, {"adult": "hot-videos.example\n", "sexual_education": "brook.org.uk\n"})
    (root / "adult" / "expressions").write_text("# words in adult URLs\n(^|[/.-])xxx([/.-]|$)\n(a)\\1\n")
    (root / "sexual_education" / "usage").write_text("white\n")
    (root / "sexual_education" / "expressions").write_text("/sexual-health/\n")
    idx = CategoryIndex.load(root, {"pornography": ("adult",), "sexual_education": ("sexual_education",)})
    assert "expressions:3: expression skipped" in caplog.text
    df = pl.DataFrame({
        "host": ["cdn.example.net", "cdn.example.net", "example.net", "free-xxx.example.net", "box.example",
                 "example.org"],
        "url": ["http://cdn.example.net/gallery/XXX/1.jpg", "http://cdn.example.net/boxxxes", None, None,
                "http://box.example/xxx/sexual-health/", "https://aaa.example.org/"],
    })
    assert idx.annotate(df).get_column("categories").to_list() == [
        ["pornography"],  # `/XXX/` in the path, any case
        [],  # `boxxxes`: no delimiter around it
        [],
        ["pornography"],  # no URL (a TLS name): the host is matched
        [],  # the white list's expression clears it
        [],  # `(a)\1` was skipped, not compiled as something else
    ]


def test_ut1_very_restrictive_expression(tmp_path):
    """UT1's own expression for adult URLs, used as a list's `expressions`, read from the shared sample:
    matches checked by hand against its two patterns (a word list, and short words between delimiters)."""
    source = need(UT1) / "adult" / "very_restrictive_expression"
    root = _tree(tmp_path, {"adult": ""})
    (root / "adult" / "expressions").write_text(source.read_text())
    idx = CategoryIndex.load(root, {"pornography": ("adult",)})
    hosts = ["www.example.com", "www.example.com", "www.essex.ac.uk", "www.example.com", "www.example.com"]
    urls = ["http://www.example.com/free-porn/", "http://www.example.com/pornstar", "http://www.essex.ac.uk/",
            "http://www.example.com/sussex-news", "http://www.example.com/sex"]
    out = idx.annotate(pl.DataFrame({"host": hosts, "url": urls})).get_column("categories").to_list()
    # `porn` between `-` and `/`; `pornstar` is in the word list; `essex` has no delimiter before `sex`;
    # `sussex` neither; `/sex` at the end of the URL is delimited on both sides
    assert out == [["pornography"], ["pornography"], [], [], ["pornography"]]


def test_uk_sic_categories_from_the_table(tmp_path):
    """A UK Safer Internet Centre category the school does not map is fed by the table's UT1 lists that are
    present; one the school maps keeps the school's mapping."""
    from rules.uksic import UK_SIC

    root = _tree(tmp_path, {"agressif": "hate-front.example\n", "drogue": "weed-shop.example\n",
                            "dangerous_material": "bomb-howto.example\n", "ourdrugs": "pills.example\n"})
    idx = CategoryIndex.load(root, {"drugs": ("ourdrugs",)}, {k: v for k, v in UK_SIC.items() if k != "drugs"})
    assert idx.sources["violence"] == ("agressif", "dangerous_material")
    assert idx.sources["discrimination"] == ("agressif",) and idx.sources["self-harm"] == ()
    assert lookup(idx, "hate-front.example") == ["discrimination", "violence"]
    assert lookup(idx, "bomb-howto.example") == ["violence"]
    assert lookup(idx, "pills.example") == ["drugs"] and lookup(idx, "weed-shop.example") == []


def test_bare_addresses_in_a_list_match_the_server_address(tmp_path):
    """A list of bare addresses (UT1 lists hold some; a Tor relay list is only that) categorises traffic to
    them whatever name it carries; an address is matched as itself, never as a 'parent' of another."""
    root = _tree(tmp_path, {"tor": "192.0.2.201\n", "adult": "hot-videos.example\n"})
    idx = CategoryIndex.load(root, {"circumvention": ("tor",), "pornography": ("adult",)})
    df = pl.DataFrame({"host": ["www.q7xkz2mvd4.com", "hot-videos.example", None, "www.example.org"],
                       "dst_ip": ["192.0.2.201", "192.0.2.201", "192.0.2.201", "10.192.0.2.201"]})
    assert idx.annotate(df).get_column("categories").to_list() == [
        ["circumvention"], ["circumvention", "pornography"], ["circumvention"], []]
