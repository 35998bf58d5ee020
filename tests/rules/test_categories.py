"""Category lookup in UT1 lists: parent domains, and white lists beating black ones."""

from __future__ import annotations

import polars as pl

from rules.categories import CategoryIndex
from tests.conftest import SCHOOL_DAY, UT1, need


def bundled() -> CategoryIndex:
    return CategoryIndex.load(SCHOOL_DAY / "categories", {
        "pornography": ("adult",), "social_networks": ("social_networks",), "sexual_education": ("sexual_education",),
    })


def test_host_and_every_parent_domain():
    idx = bundled()
    assert idx.lookup("www.instagram.com") == ["social_networks"]
    assert idx.lookup("Scontent.CDN.Instagram.com.") == ["social_networks"]
    assert idx.lookup("notinstagram.com") == []
    assert idx.lookup(None) == []


def test_white_list_clears_black():
    idx = bundled()
    assert idx.lookup("hot-videos.example") == ["pornography"]
    assert idx.lookup("www.brook.org.uk") == []  # listed in adult, cleared by sexual_education (white)


def test_annotate_adds_a_list_per_row():
    df = pl.DataFrame({"host": ["www.facebook.com", None, "example.org", "www.facebook.com"]})
    out = bundled().annotate(df)
    assert out.get_column("categories").to_list() == [["social_networks"], [], [], ["social_networks"]]


def test_real_ut1_lists():
    root = need(UT1)
    idx = CategoryIndex.load(root, {"social_networks": ("social_networks",), "webmail": ("webmail",),
                                    "sexual_education": ("sexual_education",), "vpn": ("vpn",)})
    first_social = next(line.strip() for line in (root / "social_networks" / "domains").open() if line.strip())
    assert idx.lookup("www." + first_social) == ["social_networks"]
    assert idx.lookup("10minutemail.com") == ["webmail"]  # second line of UT1's webmail list
    for line in (root / "sexual_education" / "domains").open():
        assert idx.lookup(line.strip()) == []
