"""Media in and out: image decoding, video frames, input sources, annotated videos."""
