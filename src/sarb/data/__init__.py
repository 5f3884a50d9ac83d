"""Datasets, label masks, splits, loaders and the feature cache.

Importing the package registers every dataset reader (``--dataset``), in this order.
"""

from sarb.data import demo, manifest, coco, voc, vg  # noqa: F401, I001  (readers register themselves)
