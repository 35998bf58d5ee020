"""Mail dialogues on generated conversations: bodies are not commands, logins in clear are seen."""

from __future__ import annotations

import base64

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from fixtures.make_school_day import client_hello
from tests.collector.packet.test_packets import run


def conversation(port: int, turns: list[tuple[bool, bytes]], handshake: bool = True) -> list[tuple[int, bytes]]:
    """A TCP conversation on `port`: SYN, SYN-ACK (unless the capture begins mid-session, `handshake` false),
    then each (from client?, bytes) as one segment."""
    c, s = IP(src="10.20.2.22", dst="192.0.2.25"), IP(src="192.0.2.25", dst="10.20.2.22")
    seq = {True: 100, False: 9000}
    E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = [(1, bytes(E / c / TCP(sport=40000, dport=port, flags="S", seq=99))),
              (1, bytes(E / s / TCP(sport=port, dport=40000, flags="SA", seq=8999, ack=100)))][: 2 if handshake else 0]
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


def _mail(port: int, turns: list[tuple[bool, bytes]], handshake: bool = True) -> list:
    out, _ = run(conversation(port, turns, handshake))
    return [o for o in out if o.kind == "email"]


GREET, EHLO, OFFER = (False, b"220 smtp.valleyschool.example ESMTP Postfix\r\n"), (True, b"EHLO pc\r\n"), (
    False, b"250-smtp.valleyschool.example\r\n250 STARTTLS\r\n")
ENVELOPE = (True, b"MAIL FROM:<a@valleyschool.example>\r\nRCPT TO:<b@x.example>\r\n")


def test_a_session_seen_from_its_start_that_never_turns_to_tls_is_in_clear():
    (row,) = _mail(25, [GREET, EHLO, OFFER, ENVELOPE, (False, b"250 ok\r\n250 ok\r\n")])
    assert (row.mail_encryption, row.starttls) == ("none", None)
    # the server refused STARTTLS (454) and the client went on: in clear too
    (row,) = _mail(587, [GREET, EHLO, OFFER, (True, b"STARTTLS\r\n"), (False, b"454 4.7.0 TLS not available\r\n"),
                         ENVELOPE])
    assert (row.mail_encryption, row.mail_from) == ("none", "a@valleyschool.example")
    (imap,) = _mail(143, [(False, b"* OK ready\r\n"), (True, b"a1 CAPABILITY\r\n"), (True, b"a2 LOGOUT\r\n")])
    assert imap.mail_encryption == "none"


def test_starttls_counts_once_the_server_agreed_and_the_client_began_the_tls_handshake():
    """The row waits for the ClientHello, so it carries the name the client asked for (its SNI)."""
    (row,) = _mail(587, [GREET, EHLO, OFFER, (True, b"STARTTLS\r\n"), (False, b"220 2.0.0 Ready to start TLS\r\n"),
                         (True, client_hello("smtp.office365.com", ()))])
    assert (row.mail_encryption, row.starttls, row.host) == ("starttls", True, "smtp.office365.com")
    # POP3's STLS, and a hello cut short by the capture: the handshake began all the same
    (pop,) = _mail(110, [(False, b"+OK POP3 ready\r\n"), (True, b"STLS\r\n"), (False, b"+OK Begin TLS\r\n"),
                         (True, client_hello("pop.example.net", ())[:40])])
    assert (pop.service, pop.mail_encryption) == ("pop3", "starttls")


def test_a_session_whose_tls_was_agreed_but_not_seen_to_begin_is_unknown_not_clear():
    (row,) = _mail(25, [GREET, EHLO, OFFER, (True, b"STARTTLS\r\n"), (False, b"220 Go ahead\r\n")])
    assert (row.mail_encryption, row.starttls) == ("unknown", True)
    # no answer before the capture ended (an SMTP connection without a transaction has no row, as in Zeek)
    (row,) = _mail(143, [(False, b"* OK ready\r\n"), (True, b"a1 STARTTLS\r\n")])
    assert row.mail_encryption == "unknown"


def test_a_capture_begun_mid_session_is_unknown_unless_the_dialogue_is_read_in_clear():
    # an IMAP session already encrypted (STARTTLS before the capture began): TLS records, no greeting
    records = [(True, b"\x17\x03\x03\x00\x30" + bytes(range(48))), (False, b"\x17\x03\x03\x00\x20" + bytes(32))]
    (row,) = _mail(143, records, handshake=False)
    assert row.mail_encryption == "unknown"
    # a command read on the wire is in clear, whether or not the session's start was captured
    (row,) = _mail(25, [ENVELOPE, (False, b"250 ok\r\n250 ok\r\n")], handshake=False)
    assert (row.mail_encryption, row.mail_from) == ("none", "a@valleyschool.example")


def test_implicit_tls_on_a_mail_port_is_a_mail_session_of_its_own():
    for port, service in ((993, "imap"), (465, "smtp"), (995, "pop3"), (587, "smtp")):
        out, _ = run(conversation(port, [(True, client_hello("outlook.office365.com", ())),
                                         (False, b"\x16\x03\x03\x00\x02ok")]))
        (mail,) = [o for o in out if o.kind == "email"]
        (tls,) = [o for o in out if o.kind == "tls"]  # the hello is read as any other
        assert (mail.service, mail.mail_encryption, mail.host, mail.dst_port) == (
            service, "implicit_tls", "outlook.office365.com", port), port
        assert tls.sni == "outlook.office365.com"


def test_the_greetings_name_is_the_server_name_when_the_client_gives_none():
    (row,) = _mail(25, [GREET, EHLO, OFFER, ENVELOPE])
    assert row.host == "smtp.valleyschool.example"
    # after STARTTLS without SNI the TLS row and the flow keep it too
    out, _ = run(conversation(587, [GREET, EHLO, OFFER, (True, b"STARTTLS\r\n"), (False, b"220 Ready\r\n"),
                                    (True, client_hello("", ()))]))
    assert {(o.kind, o.host) for o in out} == {("email", "smtp.valleyschool.example"),
                                               ("tls", "smtp.valleyschool.example"),
                                               ("flow", "smtp.valleyschool.example")}
    # a greeting without a host name in first place names nothing
    for banner in (b"220 ESMTP Postfix\r\n", b"220 [192.0.2.25] ESMTP\r\n", b"220\r\n"):
        (row,) = _mail(25, [(False, banner), EHLO, ENVELOPE])
        assert row.host is None, banner
