"""deploy/clickhouse/ as far as this machine can check it (no ClickHouse server or Keeper here): the XML
parses, the cluster is two shards of two replicas with internal replication, every server has macros
naming its own shard and replica, Keeper has three nodes, and the cluster name is the one the DDL uses."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import ROOT, run_cli

DEPLOY = ROOT / "deploy" / "clickhouse"


def test_the_cluster_is_two_shards_of_two_replicas():
    cluster = ET.parse(DEPLOY / "config.d" / "trust-cluster.xml").getroot().find("remote_servers/trust")
    assert cluster is not None
    shards = cluster.findall("shard")
    assert len(shards) == 2 and all(s.findtext("internal_replication") == "true" for s in shards)
    hosts = [[r.findtext("host") for r in s.findall("replica")] for s in shards]
    assert [len(h) for h in hosts] == [2, 2]
    for shard_number, shard in enumerate(hosts, 1):  # each server's macros name its own shard and replica
        for host in shard:
            name = host.split(".")[0]
            macros = ET.parse(DEPLOY / "macros" / f"{name}.xml").getroot().find("macros")
            assert macros is not None
            assert (macros.findtext("shard"), macros.findtext("replica")) == (f"0{shard_number}", name)


def test_keeper_has_three_nodes_that_the_servers_know():
    raft = ET.parse(DEPLOY / "keeper.xml").getroot().findall("keeper_server/raft_configuration/server")
    keepers = {s.findtext("hostname") for s in raft}
    assert len(keepers) == 3 and sorted(s.findtext("id") for s in raft) == ["1", "2", "3"]
    known = ET.parse(DEPLOY / "config.d" / "trust-cluster.xml").getroot().findall("zookeeper/node")
    assert {n.findtext("host") for n in known} == keepers


def test_ddl_command_for_the_cluster():
    out = run_cli("ddl", "--cluster", "trust", check=True).stdout
    assert out.count("ON CLUSTER trust") == 9  # the database, four local tables, four Distributed ones
    assert "ENGINE = Distributed(trust, ictwatch, activity_local, cityHash64(user))" in out
