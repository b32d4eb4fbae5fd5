"""The corpus version moves on every sign of a document change, and only then."""

from __future__ import annotations

from typing import Any

from agent.services.lightrag_watch import CorpusWatch


def pipeline(busy: bool = False, msg: str = "idle", job_start: str = "", history: int = 0) -> dict[str, Any]:
    return {
        "busy": busy,
        "job_name": "indexing texts",
        "job_start": job_start,
        "docs": 1,
        "batchs": 1,
        "cur_batch": 1,
        "latest_message": msg,
        "history_messages": [f"m{i}" for i in range(history)],
        "update_status": {"full_docs": [False]},  # internal flags: no document change
    }


def counts(processed: int, pending: int = 0) -> dict[str, Any]:
    return {"status_counts": {"processed": processed, "pending": pending, "failed": 0}}


def health(model: str = "m1") -> dict[str, Any]:
    return {
        "pipeline_busy": False,
        "core_version": "1.5.7",
        "api_version": "0344",
        "configuration": {"llm_model": model},
    }


def test_repeated_identical_observations_keep_the_version() -> None:
    w = CorpusWatch()
    w.observe_health(health())
    w.observe_counts(counts(3))
    w.observe_pipeline(pipeline(history=2), from_poll=True)
    tag = w.state.tag
    for _ in range(3):
        w.observe_health(health())
        w.observe_counts(counts(3))
        w.observe_pipeline(dict(pipeline(history=2), update_status={"x": [True]}), from_poll=True)
    assert w.state.tag == tag and w.storable


def test_changes_behind_our_back_move_the_version() -> None:
    w = CorpusWatch()
    w.observe_health(health())
    w.observe_counts(counts(3))
    w.observe_pipeline(pipeline(history=2))
    seen = [w.state.tag]
    w.observe_pipeline(pipeline(busy=True, msg="Processing d-1", job_start="t1", history=3))
    seen.append(w.state.tag)
    assert not w.storable  # nothing computed while LightRAG indexes is stored
    w.observe_pipeline(pipeline(busy=False, msg="done", job_start="t1", history=5))
    seen.append(w.state.tag)
    w.observe_counts(counts(4))  # the counts moved (a document added elsewhere)
    seen.append(w.state.tag)
    assert len(set(seen)) == 4 and w.storable
    w.observe_health(health(model="m2"))  # LightRAG restarted with another model
    assert w.state.tag != seen[-1]


def test_a_write_through_powergate_settles_only_when_indexed() -> None:
    w = CorpusWatch()
    w.observe_counts(counts(1))
    w.observe_pipeline(pipeline(history=1))
    before = w.state.tag
    w.note_write("/documents/text")
    assert w.state.tag != before and not w.storable
    w.write_done("/documents/text")
    answered = w.state.tag
    # LightRAG answered the upload, the pipeline has not started yet: still settling
    w.observe_pipeline(pipeline(history=1))
    assert not w.storable and w.state.tag == answered
    w.observe_pipeline(pipeline(busy=True, msg="Processing", job_start="t2", history=2))
    assert not w.storable
    w.observe_counts(counts(2))
    w.observe_pipeline(pipeline(busy=False, msg="done", job_start="t2", history=4))
    assert w.storable and w.state.tag != answered


def test_a_no_op_write_settles_after_idle_polls() -> None:
    w = CorpusWatch()
    w.observe_counts(counts(1))
    w.observe_pipeline(pipeline(history=1))
    w.note_write("/documents/scan")
    w.observe_pipeline(pipeline(history=1))  # a client's own look does not count as a poll
    assert not w.storable
    w.observe_pipeline(pipeline(history=1), from_poll=True)
    w.observe_pipeline(pipeline(history=1), from_poll=True)
    assert w.storable


def test_clear_cache_moves_the_version_without_settling() -> None:
    w = CorpusWatch()
    before = w.state.tag
    w.note_write("/documents/clear_cache")
    assert w.state.tag != before and w.storable


def test_losing_lightrag_moves_the_version_once() -> None:
    w = CorpusWatch()
    w.mark(True)
    tag = w.state.tag
    w.mark(False, "refused")
    lost = w.state.tag
    w.mark(False, "refused")
    assert lost != tag and w.state.tag == lost and w.state.reachable is False


def test_each_run_has_its_own_versions() -> None:
    assert CorpusWatch().state.tag != CorpusWatch().state.tag


def test_a_graph_edit_moves_the_version_without_settling() -> None:
    w = CorpusWatch()
    before = w.state.tag
    w.note_write("/graph/entity/edit")
    assert w.state.tag != before and w.storable
