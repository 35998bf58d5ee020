"""FTP and Telnet logins in clear, on generated sessions."""

from __future__ import annotations

from tests.collector.packet.test_mail import conversation
from tests.collector.packet.test_packets import run


def test_ftp_login_accepted():
    out, _ = run(conversation(21, [(False, b"220 ftp ready\r\n"), (True, b"USER gwilliams\r\n"),
                                   (False, b"331 password please\r\n"), (True, b"PASS s3cret\r\n"),
                                   (False, b"230-Welcome\r\n230 Logged in\r\n")]))
    (login,) = [o for o in out if o.kind == "login"]
    assert (login.service, login.auth_user, login.auth_mechanism, login.auth_success, login.cleartext_credentials) == (
        "ftp", "gwilliams", "USER/PASS", True, True)
    assert "s3cret" not in repr(login)


def test_telnet_login_typed_a_character_at_a_time():
    typed = [(True, bytes([c])) for c in b"admin\r"]
    turns = [(False, b"\xff\xfd\x18\xff\xfd\x20Ubuntu 22.04\r\nswitch1 login: "), *typed,
             (False, b"admin\r\nPassword: "), (True, b"hunter2\r\n"), (False, b"\r\nLogin incorrect\r\n")]
    out, _ = run(conversation(23, turns))
    (login,) = [o for o in out if o.kind == "login"]
    assert (login.service, login.auth_user, login.auth_success, login.cleartext_credentials) == (
        "telnet", "admin", False, True)


def test_ftp_without_a_password_is_not_reported():
    out, _ = run(conversation(21, [(False, b"220 ready\r\n"), (True, b"USER anonymous\r\n"), (True, b"QUIT\r\n")]))
    assert [o for o in out if o.kind == "login"] == []
