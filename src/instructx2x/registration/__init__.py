"""Registration of each pair (method.md §4; rules/registration.smk): the algorithm
(``algorithm``), the stage over all pairs (``stage``: shards, gather, gate and fates), the gate
policy (``gate``), the QA statistics (``quality``), the QA montage (``montage``) and the ``register`` command (``cli``)."""

from instructx2x.registration.algorithm import (  # noqa: F401
    RegistrationResult,
    RegistrationSettings,
    register_arrays,
    register_files,
    resize,
)
from instructx2x.registration.quality import structure_ncc, transform_errors, transform_matrix_of  # noqa: F401
from instructx2x.registration.gate import GateSettings, gate_reason  # noqa: F401
