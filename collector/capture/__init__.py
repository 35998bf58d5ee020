"""Around the packet path: live capture through dumpcap or tcpdump (`live`), the line-rate capture filter
(`linerate`) and Wireshark's tshark as an alternative decoder (`tshark`). Pure Python: the work per
packet happens in `collector.packet`."""
