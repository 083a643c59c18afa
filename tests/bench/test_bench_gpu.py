"""`python -m bench.gpu --smoke`: the GPU benchmark's every setting (float32, mixed float16,
mixed float16 + XLA (XLA_COMPILE); detect(); the input pipeline) runs on CPU with a tiny config
and writes its JSON. Run as a child process (its models and memory stay out of the test process)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_gpu_bench_smoke_runs_every_setting(tmp_path):
    out = tmp_path / "gpu_smoke.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(out),
                           "--data", str(tmp_path / "data"), "--logs", str(tmp_path / "logs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["skipped"] == []
    assert [(r["mode"], r["batch"]) for r in record["train"]] == [
        ("float32", 2), ("mixed_float16", 2), ("mixed_float16_xla", 2)]
    for r in record["train"]:
        assert r["losses_finite"] and r["images_per_second"] > 0 and r["peak_rss_bytes"] > 0, r
    assert record["inference"]["median_seconds"] > 0
    assert record["pipeline"]["images_per_second"] > 0
    assert "images/s" in proc.stdout and "detect() latency" in proc.stdout
