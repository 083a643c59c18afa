"""A local Open Images-shaped mirror for tests, benchmarks and ``make demo``.

    from ..mirror import build_mirror, serve
    build_mirror("/tmp/mirror")                        # ~60 Cat images per split, a few seconds
    server, base_url = serve("/tmp/mirror")            # server.images_url for the JPEGs
    ...; server.stop()

CLI: ``python -m download.mirror build DIR`` / ``python -m download.mirror serve DIR --port P``.
"""
from __future__ import annotations


def build_mirror(dir: str, images_per_split: int = 45, members_per_shard: int = 0, seed: int = 0, **kwargs) -> dict:
    """See download.mirror.build.build_mirror."""
    from .build import build_mirror as _build
    return _build(dir, images_per_split=images_per_split, members_per_shard=members_per_shard, seed=seed, **kwargs)


def serve(dir: str, port: int = 0, latency_ms: float = 0, no_range: bool = False):
    """See download.mirror.server.serve: returns (server, base_url); ``server.images_url``."""
    from .server import serve as _serve
    return _serve(dir, port=port, latency_ms=latency_ms, no_range=no_range)


def load_ground_truth(dir: str) -> dict:
    from .build import load_ground_truth as _load
    return _load(dir)


__all__ = ["build_mirror", "serve", "load_ground_truth"]
