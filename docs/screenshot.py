"""Take a PNG screenshot of a running qwq dashboard with headless Chromium.

Starts nothing: point it at a running ``qwq up`` (the default address) or any URL serving the dashboard::

    python docs/screenshot.py docs/dashboard.png
    python docs/screenshot.py /tmp/shot.png --url http://127.0.0.1:8050/ --wait 10

Needs Chromium (Debian: ``apt-get install chromium``). Exits 0 with the PNG written, 1 when the page cannot
be reached or Chromium fails, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8765/"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_command(
    browser: str, url: str, output: Path, size: tuple[int, int], wait: float, profile: Path
) -> list[str]:
    """The headless Chromium command line that renders ``url`` and writes ``output``."""
    width, height = size
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={int(wait * 1000)}",
        f"--screenshot={output}",
        url,
    ]


def find_browser(explicit: str | None) -> str | None:
    """The Chromium binary to run: ``explicit`` if given, else the first known name on ``PATH``."""
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """``None`` if ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def screenshot(url: str, output: Path, browser: str, size: tuple[int, int], wait: float) -> None:
    """Render ``url`` into ``output``; raises :class:`RuntimeError` with Chromium's output if it fails."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="qwq-chromium-") as profile:
        command = chromium_command(browser, url, output.resolve(), size, wait, Path(profile))
        result = subprocess.run(command, capture_output=True, text=True, timeout=wait + 60, check=False)
    if result.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr.strip()[-2000:]}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="where to write the PNG")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"dashboard to capture (default {DEFAULT_URL})")
    parser.add_argument("--width", type=int, default=1440, help="viewport width in pixels (default 1440)")
    parser.add_argument("--height", type=int, default=1100, help="viewport height in pixels (default 1100)")
    parser.add_argument(
        "--wait", type=float, default=8.0, help="seconds of page time to let the graphs load (default 8)"
    )
    parser.add_argument("--browser", help="Chromium binary (default: chromium on PATH)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        print("no Chromium found: apt-get install chromium, or pass --browser", file=sys.stderr)
        return 2
    problem = reachable(args.url)
    if problem:
        print(f"cannot reach {args.url}: {problem} (is `qwq up` running?)", file=sys.stderr)
        return 1
    try:
        screenshot(args.url, args.output, browser, (args.width, args.height), args.wait)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
