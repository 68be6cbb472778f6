"""Evaluation of edited images (method.md §10): labels, evaluator backends, metrics, report."""
