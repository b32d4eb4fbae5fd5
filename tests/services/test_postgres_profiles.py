"""Per-profile hnsw.ef_search in a running agent, against a real Postgres + pgvector, as a
non-superuser role: applied on a profile switch only after consent, seen by NEW
connections, and a slow or absent database never fails a switch."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agent.profiles import BUILTIN_PROFILES
from agent.services.postgres import record_consent
from tests.conftest import GatewayFactory, free_port, wait_for
from tests.services.conftest import VectorDb
from tests.simollama import SimServer

pytestmark = pytest.mark.slow

EF = {name: p.ef_search for name, p in BUILTIN_PROFILES.items()}
SWITCH_WAIT_S = 20.0  # seconds; the database work is queued behind the switch on a shared CI machine


def switch(url: str, profile: str) -> dict[str, object]:
    r = httpx.put(url + "/agent/profile", json={"profile": profile}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def database_status(url: str) -> dict[str, object]:
    return httpx.get(url + "/agent/status", timeout=10).json()["database"]  # type: ignore[no-any-return]


def test_profile_switch_sets_ef_search_for_new_connections_after_consent(
    vdb: VectorDb, sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    assert len({EF["performance"], EF["balanced"], 40}) == 3  # distinguishable from pgvector's default
    data = tmp_path / "agent-data"
    gw = make_gateway(sim.url, config=f'[postgres]\ndsn = "{vdb.dsn}"\n', profile="battery-saver", data_dir=data)

    # no consent yet: the switch happens, the database is left alone and the status says why
    switch(gw.url, "performance")
    assert wait_for(lambda: "not consented" in str(database_status(gw.url)["tuning"]), SWITCH_WAIT_S)  # type: ignore[index]
    assert vdb.new_session_setting("hnsw.ef_search") == "40"
    assert vdb.role_settings() == []

    record_consent(data, vdb.dsn, "app", [])  # what `powergate db apply` leaves behind
    switch(gw.url, "balanced")
    assert wait_for(lambda: vdb.new_session_setting("hnsw.ef_search") == str(EF["balanced"]), SWITCH_WAIT_S)
    switch(gw.url, "performance")
    assert wait_for(lambda: vdb.new_session_setting("hnsw.ef_search") == str(EF["performance"]), SWITCH_WAIT_S)
    assert vdb.role_settings() == [f"hnsw.ef_search={EF['performance']}"]
    status = database_status(gw.url)
    assert status["reachable"] is True
    assert status["tuning"]["ef_search_applied"] == EF["performance"]  # type: ignore[index]
    assert status["max_connections"] == 40 and int(status["connections"]) >= 1  # type: ignore[arg-type]
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert "powergate_db_up 1.0" in metrics
    assert f"powergate_db_ef_search {float(EF['performance'])}" in metrics


def test_database_findings_reach_status_and_recommendations(
    vdb: VectorDb, sim: SimServer, make_gateway: GatewayFactory
) -> None:
    from tests.services.conftest import fill

    vdb.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(64))")
    fill(vdb, "items", "embedding", 64, 1500)
    gw = make_gateway(sim.url, config=f'[postgres]\ndsn = "{vdb.dsn}"\n')
    assert wait_for(lambda: database_status(gw.url)["findings"] == 1, SWITCH_WAIT_S)
    assert database_status(gw.url)["finding_ids"] == ["missing-ann-index"]
    recs = httpx.get(gw.url + "/agent/metrics", timeout=10).json()["recommendations"]
    db_recs = [r for r in recs if r["id"] == "db-missing-ann-index"]
    assert db_recs and "CREATE INDEX CONCURRENTLY" in db_recs[0]["message"]
    assert "powergate_db_findings 1.0" in httpx.get(gw.url + "/metrics", timeout=10).text
    assert vdb.indexes() == {"items_pkey": vdb.indexes()["items_pkey"]}  # the agent only looked


def test_an_unreachable_database_never_fails_a_switch(
    sim: SimServer, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    dsn = f"postgresql://app@127.0.0.1:{free_port()}/nothing"
    record_consent(tmp_path / "d", dsn, "app", [])
    gw = make_gateway(sim.url, config=f'[postgres]\ndsn = "{dsn}"\n', data_dir=tmp_path / "d")
    assert switch(gw.url, "performance")["profile"] == "performance"
    assert switch(gw.url, "battery-saver")["profile"] == "battery-saver"
    assert wait_for(lambda: database_status(gw.url)["reachable"] is False, SWITCH_WAIT_S)
    st = database_status(gw.url)
    assert "cannot reach Postgres" in str(st["error"])
    assert wait_for(lambda: "cannot reach Postgres" in str(database_status(gw.url)["tuning"]), SWITCH_WAIT_S)  # type: ignore[index]
    assert httpx.get(gw.url + "/agent/status", timeout=10).json()["profile"] == "battery-saver"
