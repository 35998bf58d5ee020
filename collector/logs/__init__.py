"""Log readers: Squid's access log (native, common, custom `logformat`, and a vectorised native reader),
web-filter logs (e2guardian, squidGuard), Suricata's EVE, DHCP servers' lease files, the kernel's
conntrack events; `formats`, the registry that says how each log format is recognised, read and
followed; `follow`, which reads a log as it is written across rotations, and `followed`, which runs
those followers for `ictwatch run`."""
