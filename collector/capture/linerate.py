"""Line-rate mode: the capture hands Python only the packets that carry names and policy signals.

At an average gigabit the decoder would spend half a core counting bulk data it learns nothing new
from. With `collector.line_rate` the capture filter below keeps what the policy reads and drops the rest
in the kernel (BPF), and the byte counts of flows come from Suricata's flow events instead (a followed
`suricata-eve` log), since the packets that would make them are gone. What is kept:

- DNS (UDP and TCP), DHCP and DHCPv6, mDNS and LLMNR: all of it (small, and every packet matters);
- TCP SYN, FIN and RST: the start and end of every connection, for its state;
- every TCP segment that starts a TLS handshake record (0x16): ClientHello and ServerHello;
- client-to-server segments with PSH set on the ports whose requests the policy reads (HTTP, HTTPS,
  mail, FTP, Telnet, BitTorrent): requests, commands and logins. **The split ClientHello**: a hello larger
  than one segment is written in one `send`, so the kernel sets PSH on its last segment only. The first
  segment starts with 0x16 and is kept by the rule before; the last by this one. A hello of three
  segments or more loses its middle ones (the decoder then records the connection without a name);
  post-quantum key shares make two segments common, three rare;
- server-to-client segments that start an HTTP response (`HTTP`) or a mail server's line, for status,
  content type and STARTTLS;
- QUIC long-header packets (Initial and Handshake: the ClientHello is in the Initials) and UDP
  BitTorrent DHT messages: every one (`d1:`), a response that opens with BEP 42's `ip` (`d2:i`) too.
"""

from __future__ import annotations

_TCP_PAYLOAD = "tcp[((tcp[12:1] & 0xf0) >> 2)"
_REQUEST_PORTS = "80 or 443 or 8080 or 3128 or 25 or 465 or 587 or 110 or 995 or 143 or 993 or 21 or 23 or 6881"
_MAIL_PORTS = "25 or 465 or 587 or 110 or 995 or 143 or 993 or 21 or 23"

_UNTAGGED = " or ".join(f"({part})" for part in (
    "port 53 or port 5353 or port 5355 or udp port 67 or udp port 68 or udp port 546 or udp port 547",
    "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0",
    f"tcp and {_TCP_PAYLOAD}:1] = 0x16",
    f"tcp dst port ({_REQUEST_PORTS}) and tcp[tcpflags] & tcp-push != 0",
    f"tcp src port (80 or 8080 or 3128) and {_TCP_PAYLOAD}:4] = 0x48545450",
    f"tcp src port ({_MAIL_PORTS}) and tcp[tcpflags] & tcp-push != 0",
    "udp port 443 and udp[8] & 0x80 != 0",
    "udp and (udp[8:2] = 0x6431 or udp[8:4] = 0x64323a69)",
))
CAPTURE_FILTER = f"({_UNTAGGED}) or (vlan and ({_UNTAGGED}))"
"""The BPF filter of line-rate mode (tcpdump/dumpcap syntax), for untagged and 802.1Q-tagged frames."""


def capture_filter(extra: str | None = None) -> str:
    """The line-rate filter, narrowed by the school's own filter (say `not host 10.20.0.5`) when given."""
    return f"({CAPTURE_FILTER}) and ({extra})" if extra else CAPTURE_FILTER
