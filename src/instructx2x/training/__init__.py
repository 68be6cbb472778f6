"""Training of the InstructPix2Pix model (method §8): data, latent cache, Lightning module, entry."""
