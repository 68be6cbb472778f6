"""Synthetic demo dataset in the exact shape of MIMIC-CXR-JPG, MIMIC-CXR reports, MIMIC-IV,
Medical-Diff-VQA and MS-CXR (see docs/synthetic.md). Entry point: ``generate.generate_dataset``."""
