"""Words as the reports and the command line print them: a count and the noun that agrees with it ("1 policy
breach", "2 policy breaches"), and text off the network made safe for a terminal. No dependencies, so a
command prints them without loading the report renderer."""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0, DEL and C1; the line and paragraph separators; Unicode's bidirectional controls (the marks,
embeddings, overrides and isolates), which reorder the rest of a terminal line."""


def plural(n: int, one: str, many: str = "") -> str:
    """`n` and the noun that agrees with it: "1 policy breach", "2 policy breaches", "0 visits"; `many` when
    adding -s or -es is wrong ("activity", "activities")."""
    if n == 1:
        return f"1 {one}"
    if not many:
        many = one + ("es" if one.endswith(("s", "sh", "ch", "x", "z")) else "s")
    return f"{n:,} {many}"


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """`text` as one line, with its control characters (ESC and the rest of C0 and C1, newline, tab and DEL)
    written as `\\xNN`, and the Unicode line separators and bidirectional controls as `\\uNNNN`: a host name,
    URL or typed reason must not move the cursor, recolour, retitle or clear the terminal that prints it, nor
    reverse the order in which the rest of its line reads."""
    return _CONTROL.sub(_escaped, text)
