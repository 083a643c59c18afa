"""Data builders for the attacks: tiny files a user's worst day would produce."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import tempfile

import numpy as np


@contextlib.contextmanager
def tiny_filesystem(size_kib=1024):
    """Yield a folder on a ``size_kib`` KiB tmpfs (a disk that fills up), or None when this
    process may not mount one (not root): the caller then shrinks the free-space probe instead."""
    d = tempfile.mkdtemp(prefix="attack-fs-")
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", d],
        capture_output=True, timeout=10).returncode == 0
    try:
        yield d if ok else None
    finally:
        if ok:
            subprocess.run(["umount", d], capture_output=True, timeout=10)
        os.rmdir(d)


def write_checkpoint(path, layers=(("conv1", (3, 3)), ("dense", (4, 2))), seed=0):
    """A Keras-2-layout weights file like ours (h5py only, no TensorFlow): one group per layer."""
    import h5py
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers], dtype="S")
        for name, shape in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode()], dtype="S")
            g.create_dataset(f"{name}/kernel:0", data=rng.normal(size=shape).astype(np.float32))
    return path


def truncate(path, keep=0.5):
    """Cut ``path`` to ``keep`` of its size: what a power loss during the write leaves."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return path


def png_bytes(array, mode=None, **save):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG", **save)
    return buf.getvalue()


@functools.lru_cache(maxsize=2)
def bomb_png(side=20000):
    """A 1-bit ``side`` x ``side`` PNG of a few hundred KB that decodes to side**2 pixels (made
    once per process: encoding it takes seconds)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# exif_transpose applies these to an image tagged 1..8; storing the inverse makes the displayed
# image the one we drew.
_INVERSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
            6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def scene(h=48, w=80):
    """(displayed RGB uint8 [h, w, 3], object mask bool [h, w]): a white block off-centre, so
    every turn or flip moves it."""
    img = np.full((h, w, 3), 30, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[6:20, 8:30] = True
    img[mask] = 230
    return img, mask


def jpeg_with_orientation(path, displayed, orientation):
    """Save ``displayed`` as a JPEG whose stored pixels, once turned by EXIF ``orientation``,
    show ``displayed`` (what a phone camera writes)."""
    from PIL import Image
    im = Image.fromarray(displayed)
    if orientation != 1:
        im = im.transpose(getattr(Image.Transpose, _INVERSE[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def voc_folder(root, image_id, image_path, width, height, objects):
    """A VOC folder for one image: ``objects`` = [(class, (y1, x1, y2, x2), bool mask or None,
    mask PNG bytes or None)]; masks are written to ``root/masks``. Returns the XML path."""
    from dataset.records import ImageRecord, MaskPNG, ObjectRecord
    from dataset.voc import write_voc
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    recs = []
    for k, (cls, box, mask, data) in enumerate(objects):
        m = None
        if mask is not None or data is not None:
            p = os.path.join(root, "masks", "%s_%d.png" % (image_id, k))
            with open(p, "wb") as f:
                f.write(data if data is not None else png_bytes(mask.astype(np.uint8) * 255))
            m = MaskPNG(path=p)
        recs.append(ObjectRecord(class_name=cls, box=box, mask=m))
    xml = os.path.join(root, "annotations", image_id + ".xml")
    write_voc(ImageRecord(image_id=image_id, path=image_path, width=width, height=height,
                          objects=recs), xml, root)
    return xml
