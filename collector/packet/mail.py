"""Mail sessions: SMTP and submission, IMAP, POP3, in clear or over TLS (clauses P2 and P5).

`Mail` reads both directions line by line until the conversation turns to TLS (STARTTLS, STLS) or ends,
and reports one `email` observation per SMTP transaction (as Zeek's smtp.log does) or per IMAP/POP3
session: the HELO/EHLO name, MAIL FROM and RCPT TO, whether a login crossed the network in clear
(mechanism, user name and whether the server accepted it) and how the session was protected
(`mail_encryption`). The password is never kept. Message bodies (SMTP DATA) are skipped without being
buffered. A session whose client opens with a TLS ClientHello (implicit TLS: 465, 993, 995, or any mail
port) is read by `MailTls`, which reports the hello as `TlsHello` does and the session's `email` row.

How a session was protected is said only on evidence. `none`: the dialogue was read in clear, either
from the connection's start (its SYN was seen) or because a command of the protocol was read on the wire,
and no TLS began. `starttls`: the server accepted STARTTLS/STLS and the client's next bytes began a TLS
handshake record (Zeek's smtp.log says `tls` once the server accepts; its ssl.log then shows the
handshake; Suricata logs that handshake as a `tls` event `from_proto` smtp). `implicit_tls`: the client
opened with a ClientHello. `unknown`: anything else, a capture begun mid-session with nothing readable, a
STARTTLS accepted with nothing after it, or a gap in the capture that hid the rest.

The server's name: the ClientHello's SNI when there is one; else the name the client looked up (DNS);
else, for SMTP, the first word of the server's 220 greeting when it is a host name (nDPI reads the same
word), which the flow and its TLS row then carry too.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from collector.observation import Observation
from collector.packet.flows import MAX_STREAM, Handler, Offer
from collector.packet.tls import TlsHello, begins_handshake, opens_with_hello

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

PORTS = {25: "smtp", 587: "smtp", 2525: "smtp", 143: "imap", 110: "pop3"}
TLS_PORTS = {465: "smtp", 993: "imap", 995: "pop3"}
"""Mail over implicit TLS (RFC 8314): the client's first bytes are a ClientHello."""
_GREETING = re.compile(r"220[ -]((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9])\.?(?: |$)",
                       re.I)
"""An SMTP greeting whose first word is a host name (a dot in it, the last label not a number)."""
MAX_LINE = 4096
_END_OF_DATA = b"\r\n.\r\n"


def _address(arg: str) -> str:
    """`<a@b>` and `a@b SIZE=1` → `a@b`."""
    arg = arg.strip()
    if arg.startswith("<"):
        return arg[1 : arg.find(">")] if ">" in arg else arg[1:]
    return arg.split(" ")[0]


def _plain_user(b64: str) -> str | None:
    """The authentication identity of a SASL PLAIN response (authzid NUL authcid NUL password)."""
    try:
        parts = base64.b64decode(b64.strip(), validate=True).split(b"\0")
    except (binascii.Error, ValueError):
        return None
    return parts[1].decode("utf-8", "replace") if len(parts) == 3 else None


def _b64_text(b64: str) -> str | None:
    try:
        return base64.b64decode(b64.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


class Mail(Handler):
    """One SMTP, IMAP or POP3 connection, read until TLS starts."""

    def __init__(self, protocol: str, from_start: bool) -> None:
        self.service = protocol
        self.clear = from_start  # the dialogue is known to be in clear: read from its start, or a command read
        self.greeted = False  # the server's first line has been read
        self.bufs = [b"", b""]
        self.read = 0
        self.in_data = False
        self.data_tail = b""
        self.awaiting: str | None = None  # the client command whose reply decides something
        self.sasl_step = ""  # a SASL exchange the client's next line continues
        self.obs: Observation | None = None
        self.helo: str | None = None
        self.reported = False

    # -- plumbing ---------------------------------------------------------------------------------

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if self.in_data:
            data = self._skip_body(data)
            if self.in_data:
                return True
            self._report(dec)
        return self._lines(0, dec, flow, data, frame, ts)

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._lines(1, dec, flow, data, frame, ts)

    def _lines(self, side: int, dec: FlowTable, flow: Flow, data: bytes, frame: int, ts: int) -> bool:
        self.read += len(data)
        buf = self.bufs[side] + data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if side == 0:
                keep = self._client_line(dec, flow, line, frame, ts)
            else:
                keep = self._server_line(dec, flow, line, ts)
            if not keep:
                return False
            if side == 0 and self.in_data:
                buf = self._skip_body(b"\r\n" + buf)
                if self.in_data:
                    buf = b""
                    break
                self._report(dec)
        self.bufs[side] = buf[-MAX_LINE:]
        return self.read <= MAX_STREAM * 4

    def _skip_body(self, data: bytes) -> bytes:
        seen = self.data_tail + data
        end = seen.find(_END_OF_DATA)
        if end < 0:
            self.data_tail = seen[-4:]
            return b""
        self.in_data = False
        self.data_tail = b""
        return seen[end + len(_END_OF_DATA) :]

    def _current(self, dec: FlowTable, flow: Flow, frame: int, ts: int) -> Observation:
        if self.obs is None:
            self.obs = dec.flow_observation("email", flow, frame, ts)
            self.obs.service, self.obs.helo = self.service, self.helo
            self.reported = False
        return self.obs

    def _report(self, dec: FlowTable, complete: bool = True) -> None:
        """Emit the row being read, in clear if that is known (`complete` false: part of the dialogue may
        not have been read)."""
        obs = self.obs
        if obs is not None and not self.reported and (
            self.service != "smtp" or obs.mail_from or obs.cleartext_credentials
        ):  # SMTP: a row per transaction or login, as Zeek's smtp.log; IMAP/POP3: per session
            known = self.clear and complete and self.awaiting != "STARTTLS"
            obs.mail_encryption = "none" if known else "unknown"
            dec.emit(obs)
            self.reported = True
        if self.service == "smtp":
            self.obs = None  # the next transaction on this connection is a row of its own

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        # bytes held behind a gap the capture never filled: what they said (a STARTTLS?) was not read
        gap = any(stream is not None and stream.pending for stream in (flow.cstream, flow.sstream))
        self._report(dec, not gap)

    # -- client commands ----------------------------------------------------------------------------

    def _client_line(self, dec: FlowTable, flow: Flow, line: str, frame: int, ts: int) -> bool:
        obs = self._current(dec, flow, frame, ts)
        if self.sasl_step:
            self._sasl_continue(obs, line)
            return True
        words = line.split(" ")
        if self.service == "imap":
            words = words[1:]  # drop the tag
        verb = words[0].upper() if words and words[0] else ""
        command = _COMMANDS.get(verb)
        if command is not None:
            self.clear = True
            command(self, obs, " ".join(words[1:]))
        return True

    def _cmd_helo(self, obs: Observation, rest: str) -> None:
        self.helo = obs.helo = rest.strip()

    def _cmd_mail(self, obs: Observation, rest: str) -> None:
        if rest.upper().startswith("FROM:"):
            obs.mail_from = _address(rest[5:])

    def _cmd_rcpt(self, obs: Observation, rest: str) -> None:
        if rest.upper().startswith("TO:"):
            obs.rcpt_to = [*obs.rcpt_to, _address(rest[3:])]

    def _cmd_data(self, obs: Observation, rest: str) -> None:
        self.awaiting = "DATA"

    def _cmd_starttls(self, obs: Observation, rest: str) -> None:
        self.awaiting = "STARTTLS"

    def _cmd_auth(self, obs: Observation, rest: str) -> None:
        mechanism, _, initial = rest.strip().partition(" ")
        if not mechanism:
            return
        self._credentials(obs, mechanism.upper())
        if obs.auth_mechanism == "PLAIN" and initial:
            obs.auth_user = _plain_user(initial)
        else:
            self.sasl_step = obs.auth_mechanism or ""
        self.awaiting = "AUTH"

    def _cmd_login(self, obs: Observation, rest: str) -> None:  # IMAP LOGIN user password
        self._credentials(obs, "LOGIN")
        obs.auth_user = rest.strip().split(" ")[0].strip('"') or None
        self.awaiting = "AUTH"

    def _cmd_user(self, obs: Observation, rest: str) -> None:  # POP3 USER, then PASS
        obs.auth_user = rest.strip() or None

    def _cmd_pass(self, obs: Observation, rest: str) -> None:
        self._credentials(obs, "USER/PASS")
        self.awaiting = "AUTH"

    def _credentials(self, obs: Observation, mechanism: str) -> None:
        obs.auth_mechanism = mechanism
        obs.cleartext_credentials = True

    def _sasl_continue(self, obs: Observation, line: str) -> None:
        if line.strip() == "*":  # the client cancelled
            self.sasl_step = ""
        elif self.sasl_step == "PLAIN":
            obs.auth_user, self.sasl_step = _plain_user(line), ""
        elif self.sasl_step == "LOGIN":  # first the user name, then the password: keep only the name
            obs.auth_user, self.sasl_step = _b64_text(line), "LOGIN-PASSWORD"
        else:
            self.sasl_step = ""

    # -- server replies -----------------------------------------------------------------------------

    def _server_line(self, dec: FlowTable, flow: Flow, line: str, ts: int) -> bool:
        if not self.greeted:
            self.greeted = True
            self._greeting(dec, flow, line, ts)
        if self.awaiting is None or not line or self.obs is None:
            return True
        if line.startswith("+ ") or line == "+" or line.startswith("334"):
            return True  # a SASL challenge: the exchange goes on
        if self.service == "smtp" and line[3:4] == "-":
            return True  # a continued multi-line reply: its last line decides
        ok = line.startswith(("2", "3", "+OK")) or (self.service == "imap" and " OK" in line[:40])
        awaiting, self.awaiting = self.awaiting, None
        self.sasl_step = ""
        if awaiting == "DATA" and ok:
            self.in_data = True
        elif awaiting == "AUTH":
            self.obs.auth_success = ok
        elif awaiting == "STARTTLS" and ok:
            self.obs.starttls = True
            self.successor = MailTls(self.service, self.obs)  # it reports the row once TLS is seen to begin
            self.obs = None
            return False
        return True

    def _greeting(self, dec: FlowTable, flow: Flow, line: str, ts: int) -> None:
        """An SMTP server's first line names it, for a flow that has no name from SNI or DNS yet."""
        named = _GREETING.match(line) if self.service == "smtp" else None
        if named is not None and flow.host is None and dec.name_for(flow.resp, ts) is None:
            flow.host = named.group(1).lower()


_COMMANDS: dict[str, Callable[[Mail, Observation, str], None]] = {
    "HELO": Mail._cmd_helo, "EHLO": Mail._cmd_helo, "MAIL": Mail._cmd_mail, "RCPT": Mail._cmd_rcpt,
    "DATA": Mail._cmd_data, "STARTTLS": Mail._cmd_starttls, "STLS": Mail._cmd_starttls, "AUTH": Mail._cmd_auth,
    "AUTHENTICATE": Mail._cmd_auth, "LOGIN": Mail._cmd_login, "USER": Mail._cmd_user, "PASS": Mail._cmd_pass,
}
"""Client commands of SMTP, IMAP (tag dropped) and POP3 that say something the policy needs."""


class MailTls(TlsHello):
    """The TLS of a mail session: its ClientHello is read as `TlsHello` reads it, and when the handler is
    done, the session's `email` row is reported, named by the hello's SNI when it has one."""

    def __init__(self, protocol: str, mail: Observation | None) -> None:
        super().__init__()
        self.protocol = protocol
        self.mail = mail  # after STARTTLS, the row of the dialogue read in clear; None for implicit TLS
        self.began = False  # the client's first bytes began a TLS handshake record

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        if self.first is None:
            self.began = begins_handshake(data)
        return super().client(dec, flow, data, seq, frame, ts)

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        super().finish(dec, flow)
        obs = self.mail
        if obs is None:
            frame, ts = self.first or (flow.frame, flow.first)
            obs = dec.flow_observation("email", flow, frame, ts)
            obs.service, obs.mail_encryption = self.protocol, "implicit_tls"
        else:
            obs.mail_encryption = "starttls" if self.began else "unknown"
        if self.hello is not None and self.hello.sni:
            obs.host = self.hello.sni
        dec.emit(obs)


class MailOffer(Offer):
    """Offers this module's handlers for SMTP, IMAP and POP3."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """For a TCP flow to one of `PORTS` or `TLS_PORTS`: `MailTls` when the client opens with a TLS
        ClientHello, else `Mail` on `PORTS` (told whether the connection's start was seen: its SYN)."""
        service = PORTS.get(flow.rport) or TLS_PORTS.get(flow.rport)
        if service is None:
            return None
        if outbound and opens_with_hello(data):
            return MailTls(service, None)
        return Mail(service, flow.cisn >= 0 or flow.sisn >= 0) if flow.rport in PORTS else None


OFFER: Final[Offer] = MailOffer()
