"""Datasets, label masks, splits, loaders and the feature cache.

Importing the package registers every dataset reader (``--dataset``), in this order.
"""

from sarb.data import demo, glyphs, manifest, coco, voc, vg, nuswide  # noqa: F401, I001  (readers register themselves)
