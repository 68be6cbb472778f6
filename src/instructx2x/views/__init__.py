"""PA view selection (method.md §2; rules/views.smk): classifier scores per image (``score``, with the
backends ``xrv`` and the cross-fitted ``classifier``), then the cheap PA decision (``decide``)."""

from instructx2x.views.decide import decide_pa, metadata_pa  # noqa: F401
from instructx2x.views.score import score_views  # noqa: F401
from instructx2x.views.tables import IMAGES_COLUMNS, read_images_table, require_columns  # noqa: F401
from instructx2x.views.xrv import XRV_VIEW_FILE, XRV_VIEW_URL, MissingWeights, load_xrv_view_model  # noqa: F401
