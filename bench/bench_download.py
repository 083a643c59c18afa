"""Downloader bytes and time against the local mirror (127.0.0.1, generated data).

1. bytes: one real-shaped mask shard (``--members`` members of ~1.7 KB, real-length names, sorted);
   fetch 0.5% of its members with each directory strategy (full / search / auto), fresh cache each
   time. Reports bytes by kind (end record, directory, members) as a share of the shard's bytes.
2. speed: ``--images`` Cat images with ``--latency-ms`` added to every request; the whole
   ``download_class`` with workers=1 (one at a time) versus workers=16. The server runs in a
   separate process (parts 2 and 3), so it does not compete for this process's GIL.
3. e2e: the default demo mirror (~60 Cat images per split), Cat, all splits.

    .venv/bin/python -m bench.bench_download [--members 20000] [--images 500] [--latency-ms 50] [--repeats 5]

Prints a table and writes bench/results/download.json (medians of ``--repeats`` runs after a warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from bench.env import env_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_bytes(tmp: str, members: int, repeats: int) -> dict:
    from download.mirror.build import filler_members, write_zip
    from download.mirror.testing import running
    from download.net import Net
    from download.remote_zip import ShardReader
    site = os.path.join(tmp, "shard")
    t = time.monotonic()
    zmembers = filler_members(random.Random(0), "7", members)
    write_zip(os.path.join(site, "openimages", "train-masks-7.zip"), zmembers)
    build_s = time.monotonic() - t
    size = os.path.getsize(os.path.join(site, "openimages", "train-masks-7.zip"))
    names = random.Random(1).sample(sorted(m[0] for m in zmembers), max(1, members // 200))
    member_bytes = sum(len(d) for n, d, _ in zmembers if n in set(names))
    out = {"shard_bytes": size, "members": members, "wanted": len(names), "wanted_payload_bytes": member_bytes,
           "build_s": round(build_s, 2), "modes": {}}
    with running(site) as srv:
        url = srv.base_url + "train-masks-7.zip"
        for mode in ("full", "search", "auto"):
            runs = []
            for r in range(repeats + 1):
                cache = tempfile.mkdtemp(dir=tmp)
                net = Net(workers=16)
                t = time.monotonic()
                reader = ShardReader(net, url, cache, workers=8, mode=mode)
                got = reader.read(names)
                dt = time.monotonic() - t
                assert all(isinstance(v, bytes) for v in got.values())
                st = net.stats.as_dict()
                if r:   # the first is the warm-up
                    runs.append((dt, st))
                shutil.rmtree(cache)
            st = runs[0][1]
            out["cd_bytes"] = reader.cd.size
            out["modes"][mode] = {"strategy": reader.strategy, "seconds": round(statistics.median(d for d, _ in runs), 4),
                                  "bytes": st["bytes"], "requests": st["requests"], "bytes_total": st["bytes_total"],
                                  "share_of_shard": round(st["bytes_total"] / size, 5)}
    return out


class served:
    """Serve a mirror from a separate process (``python -m download.mirror serve``), so the server's
    threads do not share this process's GIL with the downloader being timed."""

    def __init__(self, dir: str, latency_ms: float = 0):
        self.dir, self.latency_ms = dir, latency_ms

    def __enter__(self):
        import socket
        import subprocess
        import requests
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "download.mirror", "serve", self.dir, "--port", str(port),
                                      "--latency-ms", str(self.latency_ms)], cwd=ROOT, stdout=subprocess.DEVNULL)
        root = "http://127.0.0.1:%d/" % port
        self.base_url, self.images_url = root + "openimages/", root + "images/"
        for _ in range(100):
            try:
                requests.head(root, timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("mirror server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()


def run_download(mirror_srv, out: str, workers: int, splits) -> tuple[float, dict]:
    import resource
    from download import download_class
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.monotonic()
    m = download_class("Cat", out=out, splits=splits, base_url=mirror_srv.base_url,
                       images_url=mirror_srv.images_url, workers=workers, progress=False)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    m["bench_cpu_s"] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return time.monotonic() - t, m


def bench_speed(tmp: str, images: int, latency_ms: float, repeats: int) -> dict:
    from download.mirror import build_mirror
    mirror = os.path.join(tmp, "speed-mirror")
    build_mirror(mirror, images_per_split=images, splits=("train",), image_classes=("Cat",), seed=5)
    res = {"latency_ms": latency_ms, "images": None, "workers": {}, "server": "separate process"}
    with served(mirror, latency_ms=latency_ms) as srv:
        run_download(srv, tempfile.mkdtemp(dir=tmp), 16, "train")   # warm-up
        for workers in (1, 16):
            times, cpu, load = [], [], []
            for _ in range(repeats):
                out = tempfile.mkdtemp(dir=tmp)
                dt, m = run_download(srv, out, workers, "train")
                times.append(dt)
                cpu.append(m["bench_cpu_s"])
                load.append(os.getloadavg()[0])
                res["images"] = m["totals"]["images"]
                shutil.rmtree(out)
            res["workers"][workers] = {"seconds": round(statistics.median(times), 3),
                                       "all_seconds": [round(x, 3) for x in times],
                                       "client_cpu_s": round(statistics.median(cpu), 2),
                                       "loadavg_1min": [round(x, 1) for x in load]}
    res["speedup"] = round(res["workers"][1]["seconds"] / res["workers"][16]["seconds"], 2)
    return res


def bench_e2e(tmp: str, repeats: int) -> dict:
    from download.mirror import build_mirror
    mirror = os.path.join(tmp, "demo-mirror")
    t = time.monotonic()
    build_mirror(mirror)
    build_s = time.monotonic() - t
    shard_bytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(mirror) for f in fs
                      if f.endswith(".zip"))
    res = {"mirror_build_s": round(build_s, 2), "all_shards_bytes": shard_bytes}
    for latency in (0, 50):
        with served(mirror, latency_ms=latency) as srv:
            run_download(srv, tempfile.mkdtemp(dir=tmp), 16, ("train", "validation", "test"))
            times, m = [], None
            for _ in range(repeats):
                out = tempfile.mkdtemp(dir=tmp)
                dt, m = run_download(srv, out, 16, ("train", "validation", "test"))
                times.append(dt)
                shutil.rmtree(out)
            lr = m["last_run"]
            res["latency_%dms" % latency] = {"seconds": round(statistics.median(times), 3), "images": m["totals"]["images"],
                                             "masks": m["totals"]["masks"], "bytes_by_kind": lr["bytes_by_kind"],
                                             "requests": lr["requests"]}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=20000, help="members in the real-shaped shard (real train: ~168000)")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", choices=("bytes", "speed", "e2e"), action="append")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "download.json"))
    args = p.parse_args(argv)
    parts = args.only or ["bytes", "speed", "e2e"]
    tmp = tempfile.mkdtemp(prefix="bench-download-")
    env = env_info(("numpy", "requests"), tensorflow="not imported (download never imports it)")
    results = {"env": env, "command": "python -m bench.bench_download " + " ".join(argv or sys.argv[1:])}
    try:
        if "bytes" in parts:
            b = results["bytes"] = bench_bytes(tmp, args.members, args.repeats)
            print("\n1. bytes: fetch %d of %d members (0.5%%) from a %.1f MB shard (directory %.2f MB = %.1f%%)"
                  % (b["wanted"], b["members"], b["shard_bytes"] / 1e6, b["cd_bytes"] / 1e6,
                     100 * b["cd_bytes"] / b["shard_bytes"]))
            print("   %-7s %-7s %10s %10s %10s %10s %8s %9s %8s" % ("mode", "used", "tail B", "dir B", "member B",
                                                                   "total B", "% shard", "requests", "s"))
            for mode, r in b["modes"].items():
                by = r["bytes"]
                print("   %-7s %-7s %10d %10d %10d %10d %7.2f%% %9d %8.3f" % (
                    mode, r["strategy"], by.get("zip_tail", 0), by.get("zip_directory", 0), by.get("zip_members", 0),
                    r["bytes_total"], 100 * r["share_of_shard"], sum(r["requests"].values()), r["seconds"]))
        if "speed" in parts:
            s = results["speed"] = bench_speed(tmp, args.images, args.latency_ms, args.repeats)
            print("\n2. speed: %d images, %g ms added per request" % (s["images"], s["latency_ms"]))
            for w, r in s["workers"].items():
                print("   workers=%-3d %8.2f s (median of %d; client CPU %.1f s; load avg %s)"
                      % (w, r["seconds"], args.repeats, r["client_cpu_s"], r["loadavg_1min"]))
            print("   speed-up: %.1fx" % s["speedup"])
        if "e2e" in parts:
            e = results["e2e"] = bench_e2e(tmp, args.repeats)
            print("\n3. e2e: default mirror (built in %.1f s), Cat, all splits; all shards = %.2f MB"
                  % (e["mirror_build_s"], e["all_shards_bytes"] / 1e6))
            for k in ("latency_0ms", "latency_50ms"):
                r = e[k]
                print("   %-13s %6.2f s  %d images %d masks  bytes %s" % (k, r["seconds"], r["images"], r["masks"],
                                                                       json.dumps(r["bytes_by_kind"])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print("\nwrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
