"""Log readers: Squid's access log (native, common, custom `logformat`, and a vectorised native reader),
web-filter logs (e2guardian, squidGuard), Suricata's EVE, DHCP servers' lease files, the kernel's
conntrack events, and `follow`, which reads a log as it is written across rotations."""
