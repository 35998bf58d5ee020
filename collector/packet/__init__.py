"""The packet path, compiled with mypyc: capture records in, observations out.

Reading pcap and pcapng records (`pcap`), link, IP and transport headers (`wire`, `frag`, `tcp`), the flow
table (`packets`), and one application handler per protocol that a flow's first bytes select (`apps`
chooses; `handler` is the shape every handler has). Every module in this folder is compiled by
`scripts/build-accel.sh`, together with the collector modules they import (`collector.compiled_sources`).
"""
