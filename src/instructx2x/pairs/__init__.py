"""Stage ``pairs`` (``rules/pairs.smk``): past/current PA pairs from the Diff-VQA difference rows
(``build``: one PA image per study, chronology flagged, pairs without a PA side set aside)."""

from instructx2x.pairs.build import PAIR_COLUMNS, build_pairs

__all__ = ["PAIR_COLUMNS", "build_pairs"]
