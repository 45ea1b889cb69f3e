"""Optical flow backends behind one interface."""
