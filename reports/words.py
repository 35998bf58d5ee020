"""Numbers in words as the reports and the command line print them: a count and the noun that agrees
with it ("1 policy breach", "2 policy breaches"). No dependencies, so a command prints it without loading
the report renderer."""

from __future__ import annotations


def plural(n: int, one: str, many: str = "") -> str:
    """`n` and the noun that agrees with it: "1 policy breach", "2 policy breaches", "0 visits"; `many` when
    adding -s or -es is wrong ("activity", "activities")."""
    if n == 1:
        return f"1 {one}"
    if not many:
        many = one + ("es" if one.endswith(("s", "sh", "ch", "x", "z")) else "s")
    return f"{n:,} {many}"
