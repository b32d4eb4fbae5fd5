"""Where powergate keeps its files, per platform (platformdirs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "powergate"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    env = os.environ.get("POWERGATE_CONFIG")
    return Path(env) if env else config_dir() / "config.toml"


def default_data_dir() -> Path:
    env = os.environ.get("POWERGATE_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def log_dir(data_dir: Path | None = None) -> Path:
    """`<data dir>/logs` for a data dir given by --data-dir or POWERGATE_DATA_DIR (tests,
    portable installs: a run never writes outside the folder it was given), else the
    platform's user log dir."""
    if data_dir is not None:
        return data_dir / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def assets_dir() -> Path:
    """The assets folder: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent.parent  # agent/
    for candidate in (here.parent / "assets", here / "assets"):
        if (candidate / "dashboard").is_dir():
            return candidate
    return here.parent / "assets"
