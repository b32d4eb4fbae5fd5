"""What `powergate doctor` compares LightRAG's settings with."""

from __future__ import annotations


def test_doctor_knows_what_context_each_profile_sends() -> None:
    from dataclasses import replace

    from agent.profiles import BUILTIN_PROFILES
    from agent.services.lightrag_doctor import context_sent

    saver = BUILTIN_PROFILES["battery-saver"]
    got = context_sent(saver, 32768)
    if hasattr(saver, "num_ctx_max"):  # rounded up to the client's ask, within the profile's cap
        assert got == (min(32768, saver.num_ctx_max) if saver.num_ctx_max else 32768)
        assert context_sent(replace(saver, num_ctx_max=8192), 32768) == 8192  # type: ignore[call-arg]
    else:  # the profile's own value, whatever the client asked
        assert got == saver.num_ctx
