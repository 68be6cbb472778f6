"""The inference stage (``rules/inference.smk``) and the editor's front ends.

- ``rse``: ``RegionSpecificEditPipeline`` (method §9), the editor itself;
- ``shards``: rules ``infer`` / ``inference_records`` (every test/holdout pair in both modes);
- ``editor``: one edit with validated settings and inputs, shared by the two front ends;
- ``edit``: the ``instructx2x edit`` command; ``serve``: the ``instructx2x serve`` web page and HTTP API
  (its routes), with ``serve_service`` (uploads, limits, gallery, edits) and ``serve_jobs`` (the queue).

The rules' code versions name the modules they run (``inference.shards``, ``inference.rse``), so an
edit of a front end does not re-run inference.
"""
