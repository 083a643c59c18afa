"""matterport's ``utils.Dataset``: the class users subclass to feed their own data (NumPy only,
no TensorFlow; ``mrcnn.utils`` re-exports it)."""
import logging

import numpy as np

logger = logging.getLogger("mrcnn.utils")


class Dataset:
    """Base class for datasets, with matterport's API.

    Subclass it, register classes with ``add_class`` and images with
    ``add_image`` (e.g. in a ``load_xxx`` method), override ``load_mask``
    (and ``load_image`` if images are not files), then call ``prepare()``.

    Internal class ids are contiguous 0..num_classes-1 (0 is "BG");
    per-source ids are mapped through "source.id" keys.
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class.
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Register a class of ``source``. Duplicates are skipped."""
        assert "." not in source, "Source name cannot contain a dot: %r" % (source,)
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return  # already registered
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are stored in its info dict."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """A string (link or path) identifying the image, for debugging. Override it."""
        return ""

    def prepare(self, class_map=None):
        """Build the lookup tables. Call after all add_class/add_image calls."""

        def clean_name(name):
            """Shorter display name: the part before the first comma."""
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {
            "{}.{}".format(info["source"], info["id"]): cid
            for info, cid in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {
            "{}.{}".format(info["source"], info["id"]): iid
            for info, iid in zip(self.image_info, self._image_ids)}

        # Sorted for a deterministic order; BG's empty source is included
        # in every source's class list, as in matterport.
        self.sources = sorted({i["source"] for i in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = []
            for i, info in enumerate(self.class_info):
                if i == 0 or source == info["source"]:
                    self.source_class_ids[source].append(i)

    def map_source_class_id(self, source_class_id):
        """Internal class id of a "source.id" string, e.g. "coco.12" -> 23."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id, source):
        """Source's own id of internal ``class_id``."""
        info = self.class_info[class_id]
        assert info["source"] == source, (
            "Class %d belongs to source %r, not %r" % (class_id, info["source"], source))
        return info["id"]

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image in its source; override for remote images."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """Load the image as RGB uint8 [H, W, 3] as displayed (EXIF orientation applied, grey
        made RGB, alpha dropped, 16-bit scaled; see mrcnn.structures.pixels)."""
        path = self.image_info[image_id]["path"]
        try:
            from mrcnn.structures.pixels import read_rgb
            image = read_rgb(path)[0]
        except (OSError, ValueError) as e:
            raise OSError("Cannot read image %d (%s): %s. Check the file exists and is a "
                          "valid image, or remove it from the dataset."
                          % (image_id, path, e)) from e
        if image.ndim != 3:
            image = np.stack([image] * 3, axis=-1)
        if image.shape[-1] == 4:
            image = image[..., :3]
        if image.dtype != np.uint8:
            image = image.astype(np.uint8)
        return np.ascontiguousarray(image)

    def load_mask(self, image_id):
        """Instance masks of the image: (bool [H, W, N], int32 [N]).

        Override this in your subclass. The base returns empty arrays
        (and warns), as matterport does.
        """
        logger.warning("You are using the default load_mask(), maybe you need to define your own one.")
        mask = np.empty([0, 0, 0])
        class_ids = np.empty([0], np.int32)
        return mask, class_ids
