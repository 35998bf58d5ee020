"""The collector's Prometheus metrics, declared once. Labels are words from closed sets (a skip reason) or a
followed log's file name, never an address, a person's name or a host."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PACKETS = Counter("ictwatch_packets_total", "Packets read from captures (live or files).")
SKIPPED = Counter("ictwatch_input_skipped_total",
                  "Records of any input that could not be decoded and were skipped, by reason.", ["reason"])
CAPTURE_RUNNING = Gauge("ictwatch_capture_running", "1 while live capture is running, else 0.")
FOLLOW_LAG = Gauge("ictwatch_follow_lag_bytes", "Bytes written to a followed log that ictwatch has not read yet.",
                   ["log"])
FOLLOW_READ = Gauge("ictwatch_follow_last_read_timestamp_seconds", "When a followed log last gave new lines.",
                    ["log"])
CAPTURE_DROPPED = Counter("ictwatch_capture_dropped_total",
                          "Packets the capture tool reported dropped (dumpcap's count, read when it stops).")
INTERFACE_DROPPED = Gauge("ictwatch_interface_dropped_packets",
                          "The capture interface's receive drops as the kernel counts them (rx_dropped).")
