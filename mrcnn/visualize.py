"""matterport's ``mrcnn.visualize``: the same names, re-exported from ``mrcnn.viz``.

matplotlib is imported when a function runs; unless a backend was chosen already (pyplot
imported, or MPLBACKEND set, as Jupyter does), the headless "Agg" backend is selected.
With ``save_path`` a PNG is written atomically and the figure closed.
"""
from mrcnn.viz.display import (apply_mask, color_splash, display_differences,  # noqa: F401
                               display_images, display_instances, display_top_masks, draw_boxes,
                               plot_precision_recall, random_colors)
from mrcnn.viz.inspect import (display_table, display_weight_stats, draw_box, draw_rois,  # noqa: F401
                               plot_overlaps, weight_stats)
