"""Nearest-neighbour index (FAISS) over descriptors, with Parquet item metadata."""
