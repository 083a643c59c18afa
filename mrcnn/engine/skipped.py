"""Images that ``train()`` skipped, per dataset, found while loading (no up-front pass).

The input pipeline checks every sample as it loads it (``inputs.sample_problems``: the masks
are decoded then anyway) and replaces a bad one, with a warning naming the image. This ledger
collects those images after each epoch, logs how many were skipped, and keeps them out of
later ``train()`` calls on the same dataset. Datasets checked beforehand (``python -m dataset
check``, the downloader) cost nothing extra.
"""
from __future__ import annotations

import logging

log = logging.getLogger("mrcnn.engine.training")


class SkippedImages:
    """{dataset: {image_id: [problems]}} of the images skipped so far."""

    def __init__(self):
        self._by_dataset = {}   # id(dataset) -> (dataset, {image_id: [problems]}); the ref pins the id

    def of(self, dataset):
        """{image_id: [problems]} skipped in ``dataset`` so far (empty before any epoch)."""
        entry = self._by_dataset.get(id(dataset))
        return entry[1] if entry else {}

    def usable_ids(self, dataset):
        """``dataset.image_ids`` less the images already skipped."""
        bad = self.of(dataset)
        return [int(i) for i in dataset.image_ids if int(i) not in bad]

    def note(self, pipe, name):
        """Record ``pipe.failures`` (an ``InputPipeline``'s skipped images); log the count when it grew."""
        if not pipe.failures:
            return
        _, bad = self._by_dataset.setdefault(id(pipe.dataset), (pipe.dataset, {}))
        before = len(bad)
        for i, message in list(pipe.failures.items()):
            bad.setdefault(int(i), [message])
        if len(bad) > before:
            log.warning("%s: %d of %d images skipped so far (unusable annotations or loading errors, "
                        "named in the warnings above; Trainer.bad_images(dataset) lists them)",
                        name, len(bad), len(pipe.dataset.image_ids))
