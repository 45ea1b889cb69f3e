"""Content (frame-level), motion (OFS-k + NMF), pixel (nL2) and quality metrics."""
