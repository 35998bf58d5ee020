"""Which proxy and filter log lines are refusals by the school's filtering: the one test that sets an
Observation's `denied` (a blocked attempt) for every log that records a result.

Squid tags every transaction its access controls stopped `TCP_DENIED` (`TCP_DENIED_REPLY` when
`http_reply_access` stopped the reply), and that includes the authentication challenge with which every
authenticated session starts. What Debian's Squid 5.7 logs (tests/collector/logs/test_squid_real.py runs
it):

| what happened                                   | logged                 | a refusal |
|-------------------------------------------------|------------------------|-----------|
| `http_access deny` (a page or a CONNECT)        | `TCP_DENIED/403`       | yes       |
| the same with `deny_info http://block-page/`    | `TCP_DENIED/302`       | yes       |
| the same with `deny_info TCP_RESET`             | `TCP_DENIED/000`       | yes       |
| `http_reply_access deny` (an executable, say)   | `TCP_DENIED_REPLY/403` | yes       |
| credentials asked for, or wrong                 | `TCP_DENIED/407`       | no        |
| a malformed request, a request that never came  | `NONE_NONE/400`, `/000`| no        |
| the server failed or could not be reached       | `TCP_MISS/502` …       | no        |

So a line is a refusal when its result code says DENIED, unless its status is a challenge (401 and 407,
and 511, the captive portal's "network authentication required") or an error: 400 (older Squids wrote
`TCP_DENIED/400` for a request they could not parse) or any 5xx. e2guardian's lines say DENIED for its
`*DENIED*` decisions; squidGuard's refusals are its REDIRECT (to the block page) and DENY.
"""

from __future__ import annotations

CHALLENGES = frozenset({401, 407, 511})
"""Statuses that ask the client to authenticate: never a refusal."""
_SQUIDGUARD_REFUSALS = ("REDIRECT", "DENY")


def refused(result: str | None, status: int | None) -> bool:
    """Whether a log line with this result code (Squid's `TCP_DENIED`, e2guardian's `DENIED`, squidGuard's
    `REDIRECT`) and HTTP status (None when none was sent) records a refusal by the school's filtering."""
    if not result or status in CHALLENGES or status == 400 or (status is not None and status >= 500):
        return False
    return "DENIED" in result or result in _SQUIDGUARD_REFUSALS
