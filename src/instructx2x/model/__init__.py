"""InstructPix2Pix components (method §8): built from a preset or a local pretrained directory."""
