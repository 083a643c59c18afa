"""Memory of streaming a huge segmentation CSV: peak RSS and how flat it stays.

Generates a ``--size-mb`` (default 1024) CSV with the real header on disk in a temp dir (rows of
~350 made-up classes, ~0.4% Cat as in the real train split), serves it from a *separate process*
(``python -m download.mirror serve``), and stream-filters it for Cat in this process with
``download.annotations.stream_filter`` in a fresh child process per run, while a thread samples
that process's RSS every 20 ms; the kernel's high-water mark (VmHWM) is reported as the peak.

Reports, per run: peak RSS, RSS when 10% of the bytes had arrived, the largest rise after that,
throughput and rows kept; medians over ``--repeats`` runs after one warm-up.

    .venv/bin/python -m bench.bench_csv_memory [--size-mb 1024] [--repeats 5]

Prints a table and writes bench/results/csv_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MID = "/m/01yrx"


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its high-water mark since exec (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def generate(path: str, size_mb: int, seed: int = 0) -> int:
    """Write the CSV (64 distinct ~1 MB blocks in random order); returns the Cat rows written."""
    from download.annotations import HEADER
    rng = random.Random(seed)
    mids = ["/m/0%s" % "".join(rng.choice("0123456789abcdefghjkmnpqrstvwxyz") for _ in range(4)) for _ in range(350)]
    blocks, cats = [], []
    for _ in range(64):
        lines, n_cat = [], 0
        size = 0
        while size < 1 << 20:
            mid = MID if rng.random() < 0.004 else rng.choice(mids)
            n_cat += mid == MID
            iid = "%016x" % rng.getrandbits(64)
            clicks = ";".join("%.5f %.5f %d" % (rng.random(), rng.random(), rng.randrange(2)) for _ in range(4))
            line = "%s_%s_%08x.png,%s,%s,%08x,%.6f,%.6f,%.6f,%.6f,%.5f,%s\n" % (
                iid, mid.replace("/", ""), rng.getrandbits(32), iid, mid, rng.getrandbits(32),
                rng.random() / 2, 0.5 + rng.random() / 2, rng.random() / 2, 0.5 + rng.random() / 2, rng.random(), clicks)
            lines.append(line)
            size += len(line)
        blocks.append("".join(lines).encode())
        cats.append(n_cat)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    total, kept = 0, 0
    with open(path, "wb") as f:
        f.write((",".join(HEADER) + "\n").encode())
        while total < size_mb << 20:
            i = rng.randrange(64)
            f.write(blocks[i])
            total += len(blocks[i])
            kept += cats[i]
    return kept


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(url: str, tmp: str, size: int) -> dict:
    from download.annotations import stream_filter
    from download.net import Net
    net = Net(workers=1, timeout=60)
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.monotonic(), net.stats.bytes.get("csv", 0), rss_mb()))
            time.sleep(0.02)
    base = rss_mb()
    th = threading.Thread(target=sampler, daemon=True)
    t = time.monotonic()
    th.start()
    with open(os.path.join(tmp, "kept.csv"), "w+b") as out:
        kept = stream_filter(net, url, MID, out)
    dt = time.monotonic() - t
    stop.set()
    th.join()
    samples.append((time.monotonic(), net.stats.bytes.get("csv", 0), rss_mb()))
    net.close()
    after10 = [r for _, b, r in samples if b >= 0.1 * size]
    at10 = after10[0] if after10 else samples[-1][2]
    trace = [(round(b / size, 3), round(r, 1)) for _, b, r in samples[::max(1, len(samples) // 20)]]
    return {"seconds": round(dt, 3), "mb_per_s": round(size / 1e6 / dt, 1), "rows_kept": kept,
            "rss_before_mb": round(base, 1), "peak_sampled_rss_mb": round(max(r for _, _, r in samples), 1),
            "peak_rss_mb": round(rss_mb("VmHWM"), 1),
            "rss_at_10pct_mb": round(at10, 1), "max_rise_after_10pct_mb": round(max(after10, default=at10) - at10, 1),
            "samples": len(samples), "trace_fraction_rss": trace}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "csv_memory.json"))
    p.add_argument("--child", nargs=3, metavar=("URL", "TMP", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:   # one measured run in this fresh process; JSON on stdout
        url, tmp, size = args.child
        print(json.dumps(one_run(url, tmp, int(size))))
        return 0
    import requests

    from bench.env import env_info
    tmp = tempfile.mkdtemp(prefix="bench-csv-")
    server = None
    try:
        path = os.path.join(tmp, "mirror", "openimages", "v5", "train-annotations-object-segmentation.csv")
        t = time.monotonic()
        cats = generate(path, args.size_mb)
        gen_s = time.monotonic() - t
        size = os.path.getsize(path)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "download.mirror", "serve", os.path.join(tmp, "mirror"),
                                   "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL)
        url = "http://127.0.0.1:%d/openimages/v5/train-annotations-object-segmentation.csv" % port
        for _ in range(100):
            try:
                requests.head(url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        runs = []
        for _ in range(args.repeats + 1):
            child = subprocess.run([sys.executable, "-m", "bench.bench_csv_memory", "--child", url, tmp, str(size)],
                                   cwd=ROOT, capture_output=True, text=True, check=True)
            runs.append(json.loads(child.stdout))
        runs = runs[1:]   # the first is the warm-up (page cache)
        assert all(r["rows_kept"] == cats for r in runs), (cats, [r["rows_kept"] for r in runs])
        keys = ("seconds", "mb_per_s", "rss_before_mb", "peak_rss_mb", "rss_at_10pct_mb", "max_rise_after_10pct_mb")
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        result = {"env": env_info(("numpy", "requests")),
                  "command": "python -m bench.bench_csv_memory " + " ".join(argv or sys.argv[1:]),
                  "csv_bytes": size, "generate_s": round(gen_s, 1), "cat_rows": cats, "median": med, "runs": runs}
        print("CSV: %.2f GB, %d Cat rows, generated in %.1f s; server in a separate process" % (size / 1e9, cats, gen_s))
        print("%-5s %8s %8s %10s %10s %10s %12s" % ("run", "s", "MB/s", "RSS0 MB", "peak MB", "@10% MB", "rise>10% MB"))
        for i, r in enumerate(runs):
            print("%-5d %8.2f %8.1f %10.1f %10.1f %10.1f %12.1f" % (i + 1, r["seconds"], r["mb_per_s"], r["rss_before_mb"],
                                                                   r["peak_rss_mb"], r["rss_at_10pct_mb"],
                                                                   r["max_rise_after_10pct_mb"]))
        print("%-5s %8.2f %8.1f %10.1f %10.1f %10.1f %12.1f" % ("med", *(med[k] for k in keys)))
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print("wrote", args.out)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
