"""dfdetect: tell real faces from deepfakes in photos, folders and videos."""

__version__ = "0.1.0"
