"""`ovframe serve` as people and programs use it: a real server on a free local port, driven by headless
Chromium (playwright with the system's /usr/bin/chromium) and by gradio_client over its HTTP API.

Every request the server process makes to anything but itself would go through a proxy that the test
runs and counts (HTTP(S)_PROXY): none may. The browser's requests are recorded: all go to the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from ovframe.serve import examples

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Trap:
    """A TCP listener standing in for the internet: it counts connections (and the first line of each)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.seen: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(200).decode("latin-1").splitlines()[0])
                except (OSError, IndexError):
                    self.seen.append("(connection)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ovframe serve` (the demo recipe) on a free port, started as a user starts it; yields its URL."""
    home = tmp_path_factory.mktemp("serve")
    trap = Trap()
    port = _free_port()
    env = {**os.environ, "HOME": str(home), "GRADIO_TEMP_DIR": str(home / "gradio"), "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env[var] = trap.url
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # ovframe must switch it off itself
    proc = subprocess.Popen([sys.executable, "-m", "ovframe", "serve", "--port", str(port)], cwd=home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "ready at" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"ovframe serve did not start:\n{''.join(lines)}")
    url = f"http://127.0.0.1:{port}/"
    assert any(f"demo ready at {url}" in line for line in lines)
    yield {"url": url, "port": port, "trap": trap, "log": lines, "home": home}
    proc.terminate()
    proc.wait(60)
    assert trap.seen == [], f"the server reached for the network: {trap.seen}"


def _browser_or_skip():
    if not Path(CHROMIUM).exists():
        if os.environ.get("OVFRAME_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and CI requires the browser test (OVFRAME_REQUIRE_BROWSER)")
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    return sync_playwright


def test_a_person_segments_a_picture_in_the_browser(server, tmp_path):
    sync_playwright = _browser_or_skip()
    example = examples()[1]
    vocabulary = "green square, purple square, sky, red triangle"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = context.new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(server["url"], wait_until="domcontentloaded")
            page.locator("#ovf-image input[type=file]").set_input_files(str(example.image))
            page.locator("#ovf-vocabulary textarea").fill(vocabulary)
            page.locator("#ovf-segment").click()
            page.locator("#ovf-legend .ovf-class").first.wait_for(timeout=120_000)
            overlay = page.locator("#ovf-overlay img")
            overlay.wait_for(timeout=60_000)
            shot = tmp_path / "serve.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the page: {shot}")

            names = page.locator("#ovf-legend .ovf-name").all_inner_texts()
            shares = [float(s.rstrip(" %")) for s in page.locator("#ovf-legend .ovf-share").all_inner_texts()]
            assert names and set(names) <= {n.strip() for n in vocabulary.split(",")}
            assert abs(sum(shares) - 100) < 0.5 and shares == sorted(shares, reverse=True)
            assert "sky" in names  # most of the picture, as anyone can see
            assert overlay.evaluate("img => img.naturalWidth") >= 384  # the overlay picture, scaled up from 128 px
            assert page.locator("#ovf-table").inner_text().count("\n") >= len(names)
            assert "Segmented 128 x 128 px with 4 classes" in page.locator("#ovf-status").inner_text()

            # a vocabulary that cannot be used: a sentence on the page, no traceback
            page.locator("#ovf-vocabulary textarea").fill("sky, sky")
            page.locator("#ovf-segment").click()
            status = page.locator("#ovf-status")
            status.filter(has_text="Cannot segment this").wait_for(timeout=60_000)
            assert "class names must be distinct" in status.inner_text() and "Traceback" not in page.content()

            # an example picked from the page runs at once
            page.locator("#ovf-examples [data-testid='dataset-cell-2-0']").click()  # the third example's picture
            page.locator("#ovf-status").filter(has_text="Segmented 128 x 128 px with 6 classes").wait_for(timeout=120_000)
            assert page.locator("#ovf-vocabulary textarea").input_value() == examples()[2].vocabulary
            page.screenshot(path=str(tmp_path / "serve-example.png"), full_page=True)
        finally:
            context.close()
    assert requested and all(u.startswith(server["url"]) or u.startswith(("data:", "blob:")) for u in requested), [
        u for u in requested if not u.startswith(server["url"])]
    assert Image.open(shot).width >= 1000


def test_the_http_api_gives_what_the_segmenter_gives(server, tmp_path):
    from gradio_client import Client, handle_file

    from ovframe.api import Segmenter

    example = examples()[0]
    client = Client(server["url"], analytics_enabled=False, verbose=False, download_files=str(tmp_path))
    overlay, legend, table, status = client.predict(handle_file(str(example.image)), example.vocabulary, api_name="/segment")
    assert status.startswith("Segmented 128 x 128 px with 6 classes")
    with Image.open(overlay) as im:
        assert im.format == "PNG" and im.width >= 384
    rows = table["data"] if isinstance(table, dict) else table
    want = Segmenter("demo")(str(example.image), example.vocabulary)  # the same recipe, in this process
    assert [r[0] for r in rows] == [s.label for s in want.segments]
    assert [float(r[1]) for r in rows] == [round(100 * want.shares[s.label], 2) for s in want.segments]
    for segment in want.segments:
        assert f'<span class="ovf-name">{segment.label}</span>' in legend

    _, _, _, status = client.predict(handle_file(str(example.image)), "", api_name="/segment")
    assert status.startswith("**Type a vocabulary**")


def test_it_listens_on_this_machine_only(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=5):
        pass
    try:  # an address of this machine that is not loopback, if it has one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            outside = s.getsockname()[0]
    except OSError:
        outside = None
    if outside is None or outside.startswith("127."):
        pytest.skip("this machine has no address other than loopback")
    with pytest.raises(OSError):
        socket.create_connection((outside, server["port"]), timeout=5).close()
