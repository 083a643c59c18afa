"""Start-up hook (run by ``mrcnn_keras3_imgaug.pth``): ``import imgaug`` works on NumPy 2.

imgaug 0.4.0 reads ``np.sctypes`` at import time, which NumPy 2 removed. This module puts a
finder at the front of ``sys.meta_path`` that waits for the first ``import imgaug``, then
restores the removed NumPy names (``mrcnn.data.imgaug_compat.apply_numpy_shim``: only names NumPy
lacks, never replacing one) and steps aside so the normal import proceeds. It imports nothing
at start-up (no NumPy); when imgaug is never imported, NumPy is never touched.
"""
import sys

_TARGET = "imgaug"


class ImgaugNumpyShimFinder:
    """Meta-path finder that fires once, on the first import of ``imgaug``; finds nothing."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname == _TARGET or fullname.startswith(_TARGET + "."):
            uninstall()
            try:
                from mrcnn.data.imgaug_compat import apply_numpy_shim
            except Exception:  # mrcnn removed but the .pth left behind: do nothing
                return None
            apply_numpy_shim()
        return None


def install():
    """Put the finder first on ``sys.meta_path``, unless imgaug is already imported. Idempotent."""
    if _TARGET in sys.modules:
        return
    if not any(f is ImgaugNumpyShimFinder for f in sys.meta_path):
        sys.meta_path.insert(0, ImgaugNumpyShimFinder)


def uninstall():
    """Remove the finder (it is needed only once)."""
    sys.meta_path[:] = [f for f in sys.meta_path if f is not ImgaugNumpyShimFinder]


install()
