"""Share files (config/, msg/) are found in the checkout first, then in an installed prefix; the
user cache follows MINIVLN_CACHE / XDG_CACHE_HOME."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from minivln_core import paths

REPO = Path(__file__).resolve().parents[1]


def test_checkout_files_come_first() -> None:
    assert paths.CHECKOUT == REPO
    assert paths.share_file("config", "navigator.yaml") == REPO / "config" / "navigator.yaml"
    assert paths.share_file("msg", "NavigatorStatus.msg") == REPO / "msg" / "NavigatorStatus.msg"


def test_installed_prefixes_are_searched_without_a_checkout(tmp_path, monkeypatch) -> None:
    venv, ament = tmp_path / "venv", tmp_path / "ament"
    for prefix, name in ((venv, "navigator.yaml"), (ament, "sim_robot.yaml")):
        (prefix / "share" / "minivln_ros" / "config").mkdir(parents=True)
        (prefix / "share" / "minivln_ros" / "config" / name).write_text("x: 1\n")
    monkeypatch.setattr(paths, "CHECKOUT", None)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(ament))
    assert paths.share_file("config", "navigator.yaml") == venv / "share" / "minivln_ros" / "config" / "navigator.yaml"
    assert paths.share_file("config", "sim_robot.yaml") == ament / "share" / "minivln_ros" / "config" / "sim_robot.yaml"
    with pytest.raises(FileNotFoundError, match=r"config/missing.yaml not found \(looked in .*venv.*ament"):
        paths.share_file("config", "missing.yaml")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MINIVLN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.default_cache_dir() == tmp_path / "xdg" / "minivln"
    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "mine"))
    assert paths.default_cache_dir() == tmp_path / "mine"
