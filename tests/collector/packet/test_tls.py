"""ClientHello parsing: SNI, ALPN, versions; hellos cut short are refused, not guessed."""

from __future__ import annotations

import pytest

from collector.packet.tls import hello_from_stream, version_name
from fixtures.make_school_day import client_hello


def test_sni_alpn_and_supported_versions():
    hello = hello_from_stream(client_hello("WWW.Example.org", ("h2", "http/1.1")))
    assert hello is not None
    assert hello.sni == "www.example.org"
    assert hello.alpn == ["h2", "http/1.1"]
    assert hello.version == "TLSv13"


def test_hello_cut_before_its_extensions_end():
    data = client_hello("www.example.org")
    assert hello_from_stream(data[:60]) is None  # the rest of the record has not arrived yet
    cut = bytearray(data[:60])  # a record and a handshake message that claim to end there
    cut[3:5] = (60 - 5).to_bytes(2, "big")
    cut[6:9] = (60 - 9).to_bytes(3, "big")
    with pytest.raises(ValueError, match="cut short"):
        hello_from_stream(bytes(cut))


def test_not_a_hello():
    with pytest.raises(ValueError):
        hello_from_stream(b"\x17\x03\x03\x00\x10" + bytes(16))


@pytest.mark.parametrize(("code", "name"), [(0x0301, "TLSv10"), (0x0303, "TLSv12"), (0x7F17, "TLSv13-draft23")])
def test_version_names_follow_zeek(code, name):
    assert version_name(code) == name


def test_draft_versions_rank_between_tls12_and_tls13():
    from collector.packet.tls import version_rank

    assert sorted([0x0304, 0x7F17, 0x0303, 0x7F12], key=version_rank) == [0x0303, 0x7F12, 0x7F17, 0x0304]
