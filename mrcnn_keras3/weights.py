"""``--weights coco|imagenet|last|none|PATH``: checked before any download or model build.

COCO weights are fetched once into ``$MRCNN_CACHE`` (default ``~/.cache/mrcnn/``) with a
progress bar; an interrupted download keeps its ``.part`` file and the next run resumes it
with an HTTP Range request.
"""
from __future__ import annotations

import os
import sys

from mrcnn.io.coco_weights import COCO_MODEL_URL, COCO_SIZE

from .cli import Interrupted, UsageError

COCO_URL = os.environ.get("MRCNN_COCO_URL", COCO_MODEL_URL)
KEYWORDS = ("coco", "imagenet", "last", "none")


def coco_weights_path():
    cache = os.environ.get("MRCNN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mrcnn"))
    return os.path.join(cache, "mask_rcnn_coco.h5")


def check_weights_file(path):
    """UsageError (before TensorFlow loads) for a missing or non-HDF5 weights file."""
    from mrcnn.io.runs import RunError, check_weights_file as check_file

    if not os.path.isfile(path):
        raise UsageError(f"Weights file not found: {path}. Pass coco, imagenet, last, none or the path "
                         f"of an existing .h5 file (a run's best.h5 / last.h5, or mask_rcnn_coco.h5).")
    try:
        return check_file(path)
    except RunError as exc:
        raise UsageError(str(exc)) from None


def file_num_classes(path):
    """Class count of the heads stored in a weights file (None if it has no heads)."""
    from mrcnn.io.runs import weights_num_classes

    return weights_num_classes(check_weights_file(path))


def find_last(logs, name):
    """Newest checkpoint of a run named exactly ``name`` (``cat`` never matches ``cat_dog``)."""
    from mrcnn.io import runs

    path = runs.find_last(logs, name)
    if path is None:
        raise UsageError(f"--weights last: no checkpoint of a '{name}' run in {os.path.abspath(logs)} "
                         f"(run folders {name}YYYYmmddTHHMM/). Train first, or pass a weights path.")
    return path


def check_spec(spec, config, logs):
    """Check ``--weights`` without the network: the path of a local file (or None), else the keyword."""
    if spec not in KEYWORDS:
        file_num_classes(spec)  # missing, not HDF5: refused now, not after the download
        return spec
    if spec == "imagenet" and config.BACKBONE not in ("resnet50", "resnet101"):
        raise UsageError(f"--weights imagenet: ImageNet weights exist for the resnet50/resnet101 backbones "
                         f"only, and this config's BACKBONE is {config.BACKBONE!r}. Use --weights none, or "
                         f"--set BACKBONE=resnet50.")
    if spec == "last":
        return find_last(logs, config.NAME.lower())
    return None if spec == "none" else spec


def resolve(spec, progress=True):
    """The weights file of a checked spec, fetching COCO / ImageNet weights when needed."""
    if spec in (None, "none"):
        return None
    if spec == "coco":
        return fetch_coco(progress)
    if spec == "imagenet":
        from mrcnn.model import MaskRCNN
        try:
            return MaskRCNN.get_imagenet_weights(None)
        except OSError as exc:
            raise UsageError(f"Could not fetch the ImageNet ResNet-50 weights ({exc}). Pass a local file "
                             f"with --weights PATH, or train from scratch with --weights none.") from None
    return spec


def fetch_coco(progress=True):
    """``mask_rcnn_coco.h5`` in the cache, downloaded (resumably) if missing."""
    path = coco_weights_path()
    if os.path.isfile(path) and os.path.getsize(path) == COCO_SIZE:
        return path
    fetch_resumable(COCO_URL, path, COCO_SIZE if COCO_URL.endswith("/v2.0/mask_rcnn_coco.h5") else None,
                    progress)
    return path


def fetch_resumable(url, path, size=None, progress=True, timeout=30):
    """Download ``url`` to ``path`` through ``path.part``, resuming a partial one; a progress bar
    on a terminal. Unreachable for a host that cannot be reached; Interrupted on Ctrl-C."""
    import requests

    from mrcnn.io.fsio import atomic_rename
    from .download.net import FetchError, Unreachable, connect_failure
    from .download.progress import bar

    part = path + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        resp = requests.get(url, stream=True, timeout=timeout,
                            headers={"Range": f"bytes={have}-"} if have else {})
    except requests.ConnectionError as exc:
        reason = connect_failure(exc)
        raise (Unreachable(url, reason) if reason else FetchError(url, str(exc))) from None
    print(f"Downloading {url} to {path}{' (resuming)' if have else ''} ...", file=sys.stderr)
    with resp:
        if resp.status_code == 416 and size and have == size:
            pass  # the .part is already complete
        elif resp.status_code not in (200, 206):
            raise FetchError(url, f"HTTP {resp.status_code}", status=resp.status_code)
        else:
            if resp.status_code == 200:
                have = 0  # the server ignored the Range: start again
            total = have + int(resp.headers.get("Content-Length") or 0) or size
            pbar = bar(progress, total=total, initial=have, desc=os.path.basename(path), unit="B",
                       unit_scale=True, unit_divisor=1024)
            try:
                with open(part, "ab" if have else "wb") as out:
                    for chunk in resp.iter_content(1 << 20):
                        out.write(chunk)
                        pbar.update(len(chunk))
            except KeyboardInterrupt:
                raise Interrupted(f"Download of {os.path.basename(path)} stopped; {part} is kept and the "
                                  f"same command resumes it.") from None
            except requests.RequestException as exc:
                raise FetchError(url, f"{exc} (the same command resumes the download)") from None
            finally:
                pbar.close()
    got = os.path.getsize(part)
    if size and got != size:
        raise FetchError(url, f"got {got} of {size} bytes (the same command resumes the download)")
    with open(part, "rb") as f:
        if f.read(8) != b"\x89HDF\r\n\x1a\n":
            os.remove(part)
            raise FetchError(url, "the file is not HDF5 (an error page?)")
    atomic_rename(part, path)
    return path
