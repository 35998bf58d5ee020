"""Words as the reports and the command line print them: a count and the noun that agrees with it ("1 policy
breach", "2 policy breaches"), and text off the network made safe for a terminal. No dependencies, so a
command prints them without loading the report renderer."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def plural(n: int, one: str, many: str = "") -> str:
    """`n` and the noun that agrees with it: "1 policy breach", "2 policy breaches", "0 visits"; `many` when
    adding -s or -es is wrong ("activity", "activities")."""
    if n == 1:
        return f"1 {one}"
    if not many:
        many = one + ("es" if one.endswith(("s", "sh", "ch", "x", "z")) else "s")
    return f"{n:,} {many}"


def for_terminal(text: str, keep_newlines: bool = False) -> str:
    """`text` with its control characters (ESC and the rest of C0 and C1, tab and DEL; newlines too unless
    `keep_newlines`) written as `\\xNN`: a host name or URL off the network must not move the cursor,
    recolour, retitle or clear the terminal that prints it."""
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return escaped if keep_newlines else escaped.replace("\n", "\\x0a")
