"""Finding faces: the MTCNN detector, face framing and crops, tracks across frames, changed regions."""
