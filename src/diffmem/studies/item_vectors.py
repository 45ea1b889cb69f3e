"""Content vectors of training items, for prompt curation's content clusters.

An item's vector is its descriptors at `frames` evenly spaced frames, concatenated and scaled by
1/sqrt(frames): the dot product of two such vectors is the mean similarity of their time-aligned frames.
`item_vectors` reads the media; `index_items` takes the stored frame descriptors of a content index
(`diffmem index build`), the same time-aligned frames, without reading any media again.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..features.builtin import BuiltinDescriptor
from ..index import VectorIndex
from ..index.content import content_items
from ..io.video import read_frames

__all__ = ["item_vectors", "index_items"]


def item_vectors(items, descriptor=None, *, frames: int = 4, chunk: int = 64, progress: bool = True) -> np.ndarray:
    """One unit content vector per item: its descriptors at `frames` evenly spaced frames, concatenated.

    The dot product of two such vectors is the mean similarity of their time-aligned frames, so two
    copies of a clip score ~1 while two clips that only share a background or a sprite do not (an
    image is its one frame repeated). Items that cannot be read get a zero vector and join no
    content cluster. Frames of `chunk` items are encoded in one batch. Default descriptor: builtin.
    """
    descriptor = descriptor or BuiltinDescriptor()
    out = np.zeros((len(items), frames * descriptor.dim), np.float32)
    bar = tqdm(total=len(items), desc="content vectors", unit="item", disable=not progress, leave=False)
    for start in range(0, len(items), chunk):
        batch, rows = [], []
        for k in range(start, min(start + chunk, len(items))):
            try:
                arr = read_frames(items[k].path).array
            except Exception:  # unreadable media: no content evidence for this item
                continue
            idx = np.linspace(0, len(arr) - 1, num=frames).round().astype(int)
            batch.append(arr[idx])
            rows.append(k)
        if batch:
            shapes = {b.shape[1:] for b in batch}
            if len(shapes) == 1:
                enc = descriptor.encode(np.concatenate(batch))
            else:  # mixed resolutions: encode item by item
                enc = np.concatenate([descriptor.encode(b) for b in batch])
            enc = enc.reshape(len(rows), frames * descriptor.dim) / np.sqrt(frames)
            out[rows] = enc
        bar.update(min(chunk, len(items) - start))
    bar.close()
    return out


def index_items(folder, *, with_vectors: bool, frames: int = 4):
    """Items (id, caption, path) of a content index, and their `item_vectors` from the stored frame
    descriptors (the same time-aligned frames, without reading any media again)."""
    index = VectorIndex.open(folder)
    meta = index.metadata.reset_index(drop=True)
    meta["_row"] = np.arange(len(meta))
    items = sorted(content_items(index), key=lambda it: it.id)
    by_id = {str(item_id): g.sort_values("frame") for item_id, g in meta.groupby("item_id")}
    rows = []
    for it in items:
        g = by_id[it.id]
        sel = np.linspace(0, len(g) - 1, num=frames).round().astype(int)
        rows.append(g["_row"].to_numpy()[sel])
    vectors = None
    if with_vectors and items:
        v = index.vectors(np.stack(rows))  # (n_items, frames, dim)
        vectors = v.reshape(len(items), -1).astype(np.float32) / np.sqrt(frames)
    return items, list(index.skipped), vectors, dict(index.policy)
