"""Pages rendered by a real headless Chromium (Debian's `chromium`): the DOM after scripts ran,
its visible text, and a screenshot PNG for people to look at.

The flags are the ones known to work on this kind of machine: no sandbox (root), no GPU, and
no background networking (its connections to the internet are refused here, many at a time).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-dev-shm-usage"]


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: pages are checked in a real headless browser "
                    "(Debian/Ubuntu: apt-get install chromium)")
    return binary


class _Text(HTMLParser):
    """Text a reader sees: everything but scripts, styles and templates."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("script", "style", "template", "noscript"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template", "noscript") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(" ".join(data.split()))


@dataclass(frozen=True)
class Rendered:
    dom: str  # document.documentElement.outerHTML once the page (and its scripts) settled
    text: str  # the DOM's text without scripts and styles, one space between pieces
    screenshot: Path


def render(url: str, folder: Path, name: str, width: int = 1280, height: int = 2400,
           wait_ms: int = 8000, timeout: float = 120.0) -> Rendered:
    """Load `url`, give its scripts `wait_ms` of virtual time, and return its DOM, text and a
    screenshot `<folder>/<name>.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    common = [chromium(), *FLAGS, f"--user-data-dir={folder / f'.chromium-{name}'}",
              f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}"]
    dumped = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    assert dumped.returncode == 0 and dumped.stdout.strip(), dumped.stderr[-2000:]
    shot = folder / f"{name}.png"
    taken = subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=timeout)
    assert taken.returncode == 0 and shot.is_file() and shot.stat().st_size > 1000, taken.stderr[-2000:]
    parser = _Text()
    parser.feed(dumped.stdout)
    return Rendered(dumped.stdout, " ".join(parser.parts), shot)
