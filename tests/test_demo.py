"""The README's first command runs ``nm-demo``: the whole pipeline on a real headless OBS
(record with nm-companion, nm-align with a dataset, nm-validate). Run here as the console
script's module, with a shorter recording."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.obs_harness import obs_available

pytestmark = [pytest.mark.obs,
              pytest.mark.skipif(not obs_available(), reason="needs obs-studio and Xvfb")]


def test_nm_demo_runs_the_whole_pipeline(tmp_path):
    r = subprocess.run([sys.executable, "-m", "companion.demo", "--out", str(tmp_path / "demo"),
                        "--seconds", "5"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nm-demo: validation OK" in r.stdout
    start = r.stdout.index("{")
    summary = json.loads(r.stdout[start:r.stdout.index("}", start) + 1])
    assert summary["confidence"] == "exact" and summary["frames"] > 100
    assert (tmp_path / "demo" / "dataset" / "index.parquet").is_file()
    assert any((tmp_path / "demo").glob("*/frames.parquet"))
