"""The collector's Prometheus metrics, declared once: what the collector itself counts (records skipped,
the capture's drops, how far each followed log has been read). Labels are words from a closed set (a skip
reason) or a followed log's file name, never an address, a name or a host. What the pipeline counts of
the collector's output (packets, observations) is ictwatch's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SKIPPED = Counter("ictwatch_input_skipped_total",
                  "Records of any input that could not be decoded and were skipped, by reason.", ["reason"])
CAPTURE_DROPPED = Counter("ictwatch_capture_dropped_total",
                          "Packets the capture dropped: the AF_PACKET ring's count, read every half second, or "
                          "dumpcap's, read when it stops.")
INTERFACE_DROPPED = Gauge("ictwatch_interface_dropped_packets",
                          "The capture interface's receive drops as the kernel counts them (rx_dropped).")
FOLLOW_LAG = Gauge("ictwatch_follow_lag_bytes", "Bytes written to a followed log that ictwatch has not read yet.",
                   ["log"])
FOLLOW_READ = Gauge("ictwatch_follow_last_read_timestamp_seconds", "When a followed log last gave new lines.",
                    ["log"])
