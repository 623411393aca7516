"""Headless Chromium check of an HTML page: does it load, and does every <img> decode (naturalWidth > 0)?

The page is copied next to itself with a small probe script appended, so relative image paths resolve exactly
as for the real page; Chromium's --dump-dom prints the DOM after load, where the probe wrote its findings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth};
  });
  var out = document.createElement('pre');
  out.id = 'rk-probe';
  out.textContent = JSON.stringify({title: document.title, images: imgs,
                                    tables: document.querySelectorAll('table').length,
                                    links: Array.prototype.map.call(document.links, function (a) {
                                      return a.getAttribute('href'); })});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def install_chromium() -> str | None:
    """Install Debian's chromium with apt-get when it is missing (the test machines allow apt)."""
    found = find_chromium()
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, capture_output=True, timeout=300)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "chromium"], check=False, capture_output=True,
                   timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return find_chromium()


def probe_page(chromium: str, page: Path, timeout: float = 60.0) -> dict:
    """Load `page` in headless Chromium and return {title, images: [{src, complete, width}], tables, links}."""
    probed = page.with_name(f".probe-{page.name}")
    text = page.read_text()
    probed.write_text(text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE)
    try:
        with tempfile.TemporaryDirectory(prefix="rk-chromium-") as profile:
            result = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                 "--dump-dom", probed.as_uri()],
                capture_output=True, text=True, timeout=timeout,
            )
    finally:
        probed.unlink()
    match = re.search(r'<pre id="rk-probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"chromium did not run the probe (rc={result.returncode}): {result.stderr[-800:]}"
    import html

    return json.loads(html.unescape(match.group(1)))
