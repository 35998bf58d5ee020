"""Logins in clear on FTP and Telnet (clause P2): who logged in, and that a password crossed readable.

FTP: the USER and PASS commands and the server's answer (230 accepted, 530 refused). Telnet: the
server's `login:` and `Password:` prompts and the lines the client typed after them (characters often
arrive one per packet; Telnet option negotiation is skipped). One `login` observation per attempt; the
password itself is never kept. Reading stops after the first answered attempt.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from collector.observation import Observation
from collector.packet.flows import MAX_STREAM, Handler, Offer

if TYPE_CHECKING:
    from collector.packet.flows import Flow, FlowTable

PORTS = {21: "ftp", 23: "telnet"}
_IAC = re.compile(rb"\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0|\xff[\xf0-\xfa]", re.S)


class ClearLogin(Handler):
    """One FTP or Telnet session, read until its first login attempt is answered."""

    def __init__(self, protocol: str) -> None:
        self.service = protocol
        self.line = [b"", b""]
        self.read = 0
        self.expect = "user"  # Telnet: what the client's next line is
        self.obs: Observation | None = None

    def client(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(0, dec, flow, data, frame, ts)

    def server(self, dec: FlowTable, flow: Flow, data: bytes, seq: int, frame: int, ts: int) -> bool:
        return self._feed(1, dec, flow, data, frame, ts)

    def finish(self, dec: FlowTable, flow: Flow) -> None:
        if self.obs is not None and self.obs.cleartext_credentials:
            dec.emit(self.obs)
            self.obs = None

    def _feed(self, side: int, dec: FlowTable, flow: Flow, data: bytes, frame: int, ts: int) -> bool:
        self.read += len(data)
        buf = self.line[side] + _IAC.sub(b"", data)
        if side == 1 and self.service == "telnet" and self._telnet_prompt(buf.decode("latin-1").lower()):
            buf = b""  # prompts end without a newline: a recognised one is consumed here
        while b"\n" in buf or (side == 0 and b"\r" in buf):
            cut = min(i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0)
            text, buf = buf[:cut].decode("utf-8", "replace").strip(), buf[cut + 1 :]
            if text and not self._line(side, dec, flow, text, frame, ts):
                return False
        self.line[side] = buf[-1024:]
        return self.read <= MAX_STREAM

    def _observation(self, dec: FlowTable, flow: Flow, frame: int, ts: int) -> Observation:
        if self.obs is None:
            self.obs = dec.flow_observation("login", flow, frame, ts)
            self.obs.service = self.service
        return self.obs

    def _line(self, side: int, dec: FlowTable, flow: Flow, text: str, frame: int, ts: int) -> bool:
        if self.service == "ftp":
            return self._ftp(side, dec, flow, text, frame, ts)
        if side == 0 and self.expect == "user":
            self._observation(dec, flow, frame, ts).auth_user = text
            self.expect = ""
        elif side == 0 and self.expect == "password":
            obs = self._observation(dec, flow, frame, ts)
            obs.auth_mechanism, obs.cleartext_credentials = "password", True
            self.expect = "answer"
        elif side == 1 and self.expect == "answer":
            return self._answer(dec, "incorrect" not in text.lower() and "failed" not in text.lower())
        return True

    def _telnet_prompt(self, text: str) -> bool:
        """Note a `login:` or `Password:` prompt at the end of the server's text; True if one was there."""
        if text.rstrip().endswith("login:") and self.expect != "answer":
            self.expect = "user"
            return True
        if text.rstrip().endswith("password:") and self.expect in ("", "user"):
            self.expect = "password"
            return True
        return False

    def _ftp(self, side: int, dec: FlowTable, flow: Flow, text: str, frame: int, ts: int) -> bool:
        verb, _, arg = text.partition(" ")
        if side == 0 and verb.upper() == "USER":
            self._observation(dec, flow, frame, ts).auth_user = arg.strip()
        elif side == 0 and verb.upper() == "PASS":
            obs = self._observation(dec, flow, frame, ts)
            obs.auth_mechanism, obs.cleartext_credentials = "USER/PASS", True
            self.expect = "answer"
        elif side == 1 and self.expect == "answer" and text[:3].isdigit() and text[3:4] != "-":
            return self._answer(dec, text.startswith("2"))
        return True

    def _answer(self, dec: FlowTable, ok: bool) -> bool:
        if self.obs is not None:
            self.obs.auth_success = ok
            dec.emit(self.obs)
            self.obs = None
        return False


class LoginOffer(Offer):
    """Offers this module's handler for FTP and Telnet logins."""

    def tcp(self, flow: Flow, outbound: bool, data: bytes) -> Handler | None:
        """A `ClearLogin` handler for a TCP flow to one of `PORTS`."""
        return ClearLogin(PORTS[flow.rport]) if flow.rport in PORTS else None


OFFER: Final[Offer] = LoginOffer()
