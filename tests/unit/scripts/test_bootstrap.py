"""The README's set-up script: without root and without a package it stops with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to drop to nobody")
def test_non_root_with_a_missing_package_says_what_to_install() -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KCRASH_APT_PACKAGES": "make kcrash-no-such-package"}
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(ROOT / "scripts" / "bootstrap.sh")],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "kcrash: run as root or install these Debian packages first: apt-get install kcrash-no-such-package"]
