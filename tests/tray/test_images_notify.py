"""Icon artwork and notifications, without a display."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.tray.images import COLORS, SIZES, draw_icon, write_assets
from agent.tray.notify import BURST, Notifier


def dominant(img: Image.Image) -> tuple[int, int, int]:
    rgba = img.convert("RGBA")
    raw = rgba.tobytes()
    pixels = [tuple(raw[i : i + 4]) for i in range(0, len(raw), 4)]
    px = [p[:3] for p in pixels if p[3] > 200 and min(p[:3]) < 200]  # not the white ring or glyph
    return max(set(px), key=px.count)


@pytest.mark.parametrize("size", SIZES)
def test_profiles_are_told_apart_at_every_size(size: int) -> None:
    colours = {p: dominant(draw_icon(p, size)) for p in COLORS}
    assert len(set(colours.values())) == 3
    for p, c in colours.items():
        # the icon's main colour is closest to its own profile's colour, even at 16 px
        nearest = min(COLORS, key=lambda q: sum(abs(a - b) for a, b in zip(c, COLORS[q], strict=True)))
        assert nearest == p, (p, size, c)
        img = draw_icon(p, size)
        assert img.size == (size, size) and img.mode == "RGBA"
        assert img.getpixel((0, 0))[3] == 0  # transparent corners: round on any taskbar


def test_white_ring_keeps_the_icon_visible_on_dark_and_light_bars() -> None:
    img = draw_icon("battery-saver", 32)
    ring = img.getpixel((16, 1))
    assert ring[3] > 150 and min(ring[:3]) > 200


def test_badges_change_the_pixels() -> None:
    plain = draw_icon("balanced", 32)
    down = draw_icon("balanced", 32, upstream_down=True)
    paused = draw_icon("balanced", 32, paused=True)
    assert plain.tobytes() != down.tobytes() and plain.tobytes() != paused.tobytes()
    r, g, b, _ = down.getpixel((27, 4))  # the red badge, top right
    assert r > 180 and g < 120 and b < 120


def test_assets_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = write_assets(tmp_path)
    assert (tmp_path / "powergate.ico").exists() and len(files) == 3 * len(SIZES) + 3
    with Image.open(tmp_path / "powergate.ico") as ico:
        assert (16, 16) in ico.info["sizes"] and (256, 256) in ico.info["sizes"]


def test_notifier_rate_limits_and_survives_a_broken_backend() -> None:
    now = [0.0]
    delivered: list[tuple[str, str]] = []

    def broken(title: str, message: str) -> None:
        delivered.append((title, message))
        raise RuntimeError("no D-Bus here")

    n = Notifier(True, fallback=broken, clock=lambda: now[0])
    assert n.notify("profile", "powergate", "On battery — switched to Balanced")
    assert not n.notify("profile", "powergate", "again at once")  # same kind within 30 s
    assert n.notify("upstream-down", "powergate", "Ollama is not reachable")
    for i in range(BURST):
        now[0] += 31
        n.notify(f"k{i}", "t", "m")
    assert n.dropped >= 1
    n.close()
    n._pool.shutdown(wait=True)
    assert delivered and delivered[0][1] == "On battery — switched to Balanced"


def test_notifier_off_sends_nothing() -> None:
    n = Notifier(False, fallback=lambda t, m: pytest.fail("must not notify"))
    assert not n.notify("profile", "t", "m")
    n.close()


def test_notifier_prefers_the_tray_icon() -> None:
    class Icon:
        HAS_NOTIFICATION = True
        visible = True
        got: list[str] = []

        def notify(self, message: str, title: str) -> None:
            self.got.append(message)

    icon = Icon()
    n = Notifier(True, icon=lambda: icon, fallback=lambda t, m: pytest.fail("plyer must not be used"))
    n.notify("first-start", "powergate", "hello")
    n._pool.shutdown(wait=True)
    assert icon.got == ["hello"]
