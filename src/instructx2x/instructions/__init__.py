"""MIMIC-EDIT-INSTRUCTION: Diff-VQA difference answers -> editing operations -> instructions.

Modules: ``vocabulary`` (diseases, levels, locations, MS-CXR categories), ``difference_parser``
(answer -> operations), ``grammar`` (operations <-> instruction text), ``attributes`` (location and
severity per operation), ``splits`` (patient-wise), ``table1`` and ``build`` (the stage's tables).
"""
