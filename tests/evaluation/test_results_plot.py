"""mrcnn.evaluation.results_plot: which series results.png draws from results.csv rows."""
import io
import struct

import numpy as np
import pytest

from mrcnn.evaluation import results_plot

ROWS = [  # as csv.DictReader gives them: strings, "" for a missing value
    {"epoch": "1", "loss": "2.0", "val_loss": "", "rpn_class_loss": "0.5", "val_segm_AP": "-1",
     "val_segm_AP50": "nan", "val_bbox_AP": "", "lr": "0.001"},
    {"epoch": "2", "loss": "1.5", "val_loss": "1.75", "rpn_class_loss": "0.25", "val_segm_AP": "0.3",
     "val_segm_AP50": "0.5", "val_bbox_AP": "0.4", "lr": "0.002"},
    {"epoch": "3", "loss": "1.0", "val_loss": "1.25", "val_segm_AP": "0.35", "lr": "0.0005"},
]


def test_series_drops_missing_nan_and_no_ap_markers():
    assert results_plot._series(ROWS, "loss") == ([1, 2, 3], [2.0, 1.5, 1.0])
    assert results_plot._series(ROWS, "val_loss") == ([2, 3], [1.75, 1.25])
    assert results_plot._series(ROWS, "rpn_class_loss") == ([1, 2], [0.5, 0.25])   # key absent in row 3
    assert results_plot._series(ROWS, "val_segm_AP") == ([2, 3], [0.3, 0.35])      # -1: not evaluated
    assert results_plot._series(ROWS, "val_segm_AP50") == ([2], [0.5])             # nan dropped
    assert results_plot._series(ROWS, "mrcnn_mask_loss") == ([], [])
    # a negative value is kept where it is not an AP (e.g. a loss with a negative term)
    assert results_plot._series([{"epoch": "1", "val_loss": "-0.5"}], "val_loss") == ([1], [-0.5])


@pytest.fixture
def drawn(monkeypatch):
    """plot() into a stream; returns (png bytes, the figure's axes)."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def spy(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    stream = io.BytesIO()
    assert results_plot.plot(ROWS, stream) is stream
    (fig,) = figures
    return stream.getvalue(), fig.axes


def test_plot_png_size(drawn):
    png, _ = drawn
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])   # IHDR: 16 x 7 inches at 80 dpi
    assert (width, height) == (1280, 560)


def test_plot_draws_each_series(drawn):
    _, axes = drawn
    assert [ax.get_title() for ax in axes] == [t for _, t in results_plot.LOSSES] + [
        "validation AP", "learning rate (end of epoch)"]

    def lines(ax):
        return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()}

    assert lines(axes[0]) == {"train": ([1, 2, 3], [2.0, 1.5, 1.0]), "validation": ([2, 3], [1.75, 1.25])}
    assert lines(axes[1]) == {"train": ([1, 2], [0.5, 0.25])}
    assert lines(axes[5]) == {}                                       # mrcnn_mask_loss: no data
    assert lines(axes[6]) == {"mask AP": ([2, 3], [0.3, 0.35]), "mask AP50": ([2], [0.5]),
                              "box AP": ([2], [0.4])}
    assert axes[6].get_ylim() == (0, 1)
    (lr,) = axes[7].get_lines()
    np.testing.assert_allclose(lr.get_ydata(), [0.001, 0.002, 0.0005])
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    assert axes[0].get_legend() is not None and axes[5].get_legend() is None


def test_plot_to_a_file_with_no_rows(tmp_path):
    path = tmp_path / "results.png"
    assert results_plot.plot([], str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
