"""Scoring: a checkpoint rebuilt into a classifier, the detect-crop-classify pipeline, image and video scans, Grad-CAM, export."""
