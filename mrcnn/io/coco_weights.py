"""matterport's COCO weights: where they live and ``download_trained_weights``."""
import os

from mrcnn.io.fsio import atomic_path

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
COCO_SIZE = 257557808  # bytes of the released mask_rcnn_coco.h5


def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL, timeout=60):
    """Download matterport's COCO weights (~258 MB) to ``coco_model_path``.

    Written to a temporary file beside the target, checked (size and HDF5
    signature), then renamed, so an interrupted download leaves nothing behind.
    """
    import shutil
    import urllib.error
    import urllib.request
    path = os.fspath(coco_model_path)
    if verbose > 0:
        print("Downloading pretrained model to " + path + " ...")
    with atomic_path(path, suffix=".part") as tmp:
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    expected = resp.headers.get("Content-Length")
                    shutil.copyfileobj(resp, out, length=1 << 20)
            except (urllib.error.URLError, OSError) as e:
                raise OSError(
                    "Could not download the weights from %s (%s). Without network access, "
                    "download the file on another machine and pass its local path instead, "
                    "e.g. model.load_weights('/path/to/mask_rcnn_coco.h5', by_name=True)."
                    % (url, e)) from e
        _check_download(tmp, path, url, expected)
    if verbose > 0:
        print("... done downloading pretrained model!")
    return path


def _check_download(tmp, path, url, expected):
    """Raise OSError when the file at ``tmp`` is shorter than announced or not HDF5."""
    size = os.path.getsize(tmp)
    if expected is not None and size != int(expected):
        raise OSError("Download from %s is incomplete (%d of %s bytes); retry, or pass a "
                      "local copy's path" % (url, size, expected))
    with open(tmp, "rb") as f:
        if path.endswith(".h5") and f.read(8) != b"\x89HDF\r\n\x1a\n":
            raise OSError("Download from %s is not an HDF5 file; check the URL, or pass "
                          "a local copy's path" % url)
