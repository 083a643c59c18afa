"""``python -m download.mirror build DIR [...]`` and ``python -m download.mirror serve DIR --port P [...]``."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m download.mirror",
                                description="Build or serve a small local Open Images-shaped mirror.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="generate the mirror into DIR")
    b.add_argument("dir")
    b.add_argument("--images-per-split", type=int, default=45,
                   help="images per split for each class with masks (default 45: ~60 show a Cat)")
    b.add_argument("--members-per-shard", type=int, default=0,
                   help="pad every zip shard to this many members of ~1.7 KB (real shape)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--shuffle-members", action="store_true", help="unsorted zip directories")
    s = sub.add_parser("serve", help="serve DIR over HTTP on 127.0.0.1")
    s.add_argument("dir")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every request")
    s.add_argument("--no-range", action="store_true", help="ignore Range headers (200 + whole body)")
    args = p.parse_args(argv)
    if args.cmd == "build":
        from .build import build_mirror
        r = build_mirror(args.dir, images_per_split=args.images_per_split, members_per_shard=args.members_per_shard,
                         seed=args.seed, shuffle_members=args.shuffle_members)
        print("built %(images)d images, %(masks)d masks in %(dir)s (%(seconds).1f s)" % r)
        return 0
    from .server import serve
    srv, base = serve(args.dir, port=args.port, latency_ms=args.latency_ms, no_range=args.no_range)
    print("base url:   %s\nimages url: %s" % (base, srv.images_url), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
