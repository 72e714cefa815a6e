"""Datasets: videos to face-crop datasets (extract, layouts, identity splits) and the crops loaded for training."""
