"""Stage ``acquire`` (``rules/acquire.smk``): the raw datasets in PhysioNet's layout and the raw manifest.

- ``sources``: where each dataset lives for each ``source`` of the config;
- ``credentials``: PhysioNet credentials from the environment or ``~/.netrc`` (never logged);
- ``fetcher``: parallel, resumable, checksum-verified transfers, quarantine of mismatches;
- ``download``: what to fetch from PhysioNet (tables, then only the needed images and reports);
- ``local_manifest``: the manifest of a copy already on disk (``source: local``), with quarantine
  of files whose SHA-256 does not match the project's ``SHA256SUMS.txt``.

``source: demo`` is acquired by the synthetic generator (``instructx2x.synthetic``, ``rules/demo.smk``).
"""
