"""Run imgaug 0.4.0 (matterport users' augmentation library) on NumPy 2. No TensorFlow.

imgaug 0.4.0 (2020, unmaintained) uses NumPy 1 names that NumPy 2 removed.
Found by running 68 augmenters (geometric, colour, blur, noise, weather,
pillike, meta) on NumPy 2.4:
- ``np.sctypes`` at import time (``imgaug/imgaug.py``): import fails.
- ``np.complex`` in the noise generators (``parameters.py``): Clouds, Fog,
  BlendAlphaFrequencyNoise fail.
- ``np.bool`` (``meta.py``, ``polys.py``) needs nothing: NumPy 2 has it again.
Everything else ran (Fliplr, Flipud, Affine, Multiply, GaussianBlur, Crop,
CropAndPad, Sometimes, OneOf, SomeOf, PiecewiseAffine, ...). ``import_imgaug()``
puts back ``np.sctypes`` and the builtin aliases ``np.bool``/``np.int``/
``np.float``/``np.complex`` with their NumPy 1 meanings, only where NumPy lacks
them (an existing attribute is never replaced), then imports imgaug.
``np.object``/``np.str`` are left alone: imgaug does not use them and NumPy
reserves them for its own scalar types.

Not NumPy-related, and the same in matterport: ``iaa.pillike.Affine`` is named
"Affine", so it is applied to the masks, and PIL refuses masks with other than
3 or 4 channels; use ``iaa.Affine``.

Importing this module is cheap: imgaug (and its OpenCV / scikit-image / SciPy
imports) loads on the first ``import_imgaug()`` call.
"""
import importlib
import threading
import warnings

import numpy as np

# Augmenters whose geometry must be applied to masks too (matterport's list);
# colour / noise / blur augmenters are skipped for masks.
MASK_AUGMENTERS = ["Sequential", "SomeOf", "OneOf", "Sometimes",
                   "Fliplr", "Flipud", "CropAndPad", "Affine", "PiecewiseAffine"]

_lock = threading.Lock()


def _numpy1_sctypes():
    """NumPy 1's ``np.sctypes``: scalar types by kind, platform-dependent sizes included."""
    def present(*names):
        seen, out = set(), []
        for name in names:
            t = getattr(np, name, None)
            if t is not None and t not in seen:
                seen.add(t)
                out.append(t)
        return out
    return {
        "int": present("int8", "int16", "int32", "int64"),
        "uint": present("uint8", "uint16", "uint32", "uint64"),
        "float": present("float16", "float32", "float64", "longdouble"),
        "complex": present("complex64", "complex128", "clongdouble"),
        "others": [bool, object, bytes, str, np.void],
    }


def _numpy1_aliases():
    """Removed NumPy 1 names used by imgaug 0.4.0, with their NumPy 1 values."""
    return {"sctypes": _numpy1_sctypes(), "bool": bool, "int": int, "float": float,
            "complex": complex}


def _missing(name):
    if name in vars(np):
        return False
    # NumPy 2 raises AttributeError (after a FutureWarning for some) from a module
    # __getattr__ for removed names; lazily provided ones resolve normally.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            getattr(np, name)
        except AttributeError:
            return True
    return False


def apply_numpy_shim():
    """Add the removed NumPy attributes imgaug needs, only if missing. Idempotent.

    Returns the names that were added (empty on NumPy 1 or on a second call).
    """
    added = []
    with _lock:
        for name, value in _numpy1_aliases().items():
            if _missing(name):
                setattr(np, name, value)
                added.append(name)
    return added


def import_imgaug():
    """Apply the NumPy 2 shim and return the imported ``imgaug`` module."""
    apply_numpy_shim()
    imgaug = importlib.import_module("imgaug")
    importlib.import_module("imgaug.augmenters")
    return imgaug


def apply_imgaug(augmentation, image, masks):
    """Apply an imgaug augmenter to an image and its masks, as matterport's load_image_gt.

    image: uint8 [H, W, C]; masks: bool [H, W, N]. One deterministic copy of the
    augmenter transforms both; for the masks only MASK_AUGMENTERS are active (no
    colour changes, nearest-style geometry on uint8 0/1). Shapes must not change.
    Returns (image uint8 [H, W, C], masks bool [H, W, N]). Masks emptied by the
    augmentation are returned as they are: dropping them is the caller's job.
    """
    imgaug = import_imgaug()

    def hook(images, augmenter, parents, default):
        """Only geometric augmenters touch the masks."""
        return augmenter.__class__.__name__ in MASK_AUGMENTERS

    image_shape, mask_shape = image.shape, masks.shape
    det = augmentation.to_deterministic()
    image = det.augment_image(image)
    masks = det.augment_image(masks.astype(np.uint8), hooks=imgaug.HooksImages(activator=hook))
    if image.shape != image_shape:
        raise ValueError(f"augmentation changed the image shape {image_shape} -> {image.shape}; "
                         "use shape-preserving augmenters (e.g. CropAndPad(keep_size=True))")
    if masks.shape != mask_shape:
        raise ValueError(f"augmentation changed the mask shape {mask_shape} -> {masks.shape}")
    return image, masks.astype(bool)
