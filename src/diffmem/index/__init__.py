"""Nearest-neighbour index (FAISS) over descriptors, with Parquet item metadata.

`VectorIndex` is generic (any fixed-dimension float32 vectors + metadata rows + a policy dict);
`build_content_index` / `open_content_index` make and open the frame-descriptor index of a training set;
`build_motion_index` / `MotionIndex` the index of its motion windows (Phi_k).
"""
from .content import DEFAULT_FPS, BuildReport, build_content_index, open_content_index, read_item_frames
from .faiss_index import FORMAT, VectorIndex, default_search_params, is_exact
from .motion import (MOTION_SUBFOLDER, MotionIndex, Neighbour, build_motion_index, build_motion_index_beside,
                     prebuilt_motion_index)

__all__ = ["VectorIndex", "FORMAT", "is_exact", "default_search_params", "build_content_index",
           "open_content_index", "read_item_frames", "BuildReport", "DEFAULT_FPS", "MotionIndex", "Neighbour",
           "build_motion_index", "build_motion_index_beside", "prebuilt_motion_index", "MOTION_SUBFOLDER"]
