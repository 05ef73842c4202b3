"""report.html renders in a real browser: headless Chromium takes a screenshot that is not blank.

Marked ``browser`` (deselected by default); run it with ``make test-browser``, which installs Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustlabels.audit.report import write_audit
from robustlabels.audit.types import AuditData, MethodResult

WIDTH, HEIGHT = 1280, 2000


def chromium() -> str:
    """The Chromium executable; a missing browser fails the test (this test exists to run it)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found: run `make test-browser`, which installs it (apt-get install -y chromium)")


def audit_folder(out: Path) -> Path:
    """A report over 300 grey 28x28 images in 4 classes, 20% of labels flipped, true labels known."""
    rng = np.random.default_rng(0)
    n, c = 300, 4
    true = rng.integers(0, c, n)
    labels = np.where(rng.random(n) < 0.2, (true + rng.integers(1, c, n)) % c, true)
    yy, xx = np.mgrid[:28, :28]
    shapes = np.stack([(xx + yy) * 4, (xx - yy) % 9 * 28, np.hypot(xx - 14, yy - 14) * 12, xx * 9])
    images = np.clip(shapes[true] + rng.normal(0, 20, (n, 28, 28)), 0, 255).astype(np.uint8)
    data = AuditData(labels, c, ["circle", "stripe", "<ring>", "ramp"], images=images, clean_labels=true,
                     source="browser test")  # fmt: skip
    scores = (labels != true) + rng.random(n)
    joint = np.bincount(true * c + labels, minlength=c * c).reshape(c, c) / n
    final = MethodResult("confident_learning", scores, scores > 1.0, true, joint=joint)
    write_audit(out, data, [final], final, extra={})
    return out / "report.html"


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    page = audit_folder(tmp_path / "audit")
    shot = tmp_path / "screenshot.png"
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
               f"--window-size={WIDTH},{HEIGHT}", page.as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "the screenshot has almost no dark pixels (no text or images drawn)"
