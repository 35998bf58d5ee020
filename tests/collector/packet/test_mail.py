"""Mail dialogues on generated conversations: bodies are not commands, logins in clear are seen."""

from __future__ import annotations

import base64

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.collector.packet.test_packets import run


def conversation(port: int, turns: list[tuple[bool, bytes]]) -> list[tuple[int, bytes]]:
    """A TCP conversation on `port`: SYN, SYN-ACK, then each (from client?, bytes) as one segment."""
    c, s = IP(src="10.20.2.22", dst="192.0.2.25"), IP(src="192.0.2.25", dst="10.20.2.22")
    seq = {True: 100, False: 9000}
    E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = [(1, bytes(E / c / TCP(sport=40000, dport=port, flags="S", seq=99))),
              (1, bytes(E / s / TCP(sport=port, dport=40000, flags="SA", seq=8999, ack=100)))]
    for from_client, data in turns:
        ip, sp, dp = (c, 40000, port) if from_client else (s, port, 40000)
        frames.append((1, bytes(E / ip / TCP(sport=sp, dport=dp, flags="PA", seq=seq[from_client]) / data)))
        seq[from_client] += len(data)
    return frames


def test_smtp_body_is_skipped_and_each_transaction_is_a_row():
    turns = [(False, b"220 mx ESMTP\r\n"), (True, b"EHLO pc\r\n"), (False, b"250-mx\r\n250 AUTH PLAIN\r\n"),
             (True, b"MAIL FROM:<a@school.example> SIZE=10\r\nRCPT TO:<b@x.example>\r\n"),
             (False, b"250 ok\r\n250 ok\r\n"), (True, b"DATA\r\n"), (False, b"354 go\r\n"),
             (True, b"Subject: hi\r\n\r\nMAIL FROM:<fake@body>\r\n"), (True, b"more\r\n.\r\n"),
             (False, b"250 queued\r\n"),
             (True, b"MAIL FROM:<c@school.example>\r\nRCPT TO:<d@y.example>\r\nQUIT\r\n")]
    out, skips = run(conversation(587, turns))
    rows = [(o.helo, o.mail_from, o.rcpt_to) for o in out if o.kind == "email"]
    assert rows == [("pc", "a@school.example", ["b@x.example"]), ("pc", "c@school.example", ["d@y.example"])]
    assert skips.total == 0


def test_smtp_auth_plain_in_clear_keeps_the_user_not_the_password():
    secret = base64.b64encode(b"\0mshah@school.example\0Sup3rSecret!").decode()
    turns = [(False, b"220 mx\r\n"), (True, b"EHLO pc\r\n"), (False, b"250 AUTH PLAIN\r\n"),
             (True, f"AUTH PLAIN {secret}\r\n".encode()), (False, b"235 2.7.0 accepted\r\n")]
    out, _ = run(conversation(25, turns))
    (row,) = [o for o in out if o.kind == "email"]
    assert (row.auth_mechanism, row.auth_user, row.auth_success, row.cleartext_credentials) == (
        "PLAIN", "mshah@school.example", True, True)
    assert not any("Sup3rSecret" in repr(o.to_json_dict()) for o in out)


def test_imap_login_in_clear_and_pop3_user_pass():
    out, _ = run(conversation(143, [(False, b"* OK ready\r\n"), (True, b'a1 LOGIN "tevans" hunter2\r\n'),
                                    (False, b"a1 NO wrong\r\n")]))
    (imap,) = [o for o in out if o.kind == "email"]
    assert (imap.service, imap.auth_mechanism, imap.auth_user, imap.auth_success) == ("imap", "LOGIN", "tevans", False)
    out, _ = run(conversation(110, [(False, b"+OK\r\n"), (True, b"USER rbaker\r\n"), (False, b"+OK\r\n"),
                                    (True, b"PASS pw\r\n"), (False, b"+OK 2 messages\r\n")]))
    (pop,) = [o for o in out if o.kind == "email"]
    assert (pop.service, pop.auth_mechanism, pop.auth_user, pop.auth_success) == ("pop3", "USER/PASS", "rbaker", True)


def test_starttls_ends_the_reading():
    out, _ = run(conversation(25, [(False, b"220 mx\r\n"), (True, b"EHLO pc\r\n"), (False, b"250 STARTTLS\r\n"),
                                   (True, b"STARTTLS\r\n"), (False, b"220 go ahead\r\n"),
                                   (True, b"\x16\x03\x01\x00\x05hello")]))
    (row,) = [o for o in out if o.kind == "email"]
    assert (row.starttls, row.helo) == (True, "pc")
