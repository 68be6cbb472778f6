"""The ``xrv`` backend: torchxrayvision's ``baseline_models.xinario.ViewModel`` (chestViewSplit
ResNet-50), built without its constructor (which hard-codes ``~/.torchxrayvision/models_data`` and
downloads), with the state dict loaded from ``views.xrv_weights_dir``. A missing file is an error
naming the file and its URL."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instructx2x.core.errors import InputError
from instructx2x.core.images import resize_square

XRV_VIEW_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/xinario_chestViewSplit_resnet-50.pt"
XRV_VIEW_FILE = "xinario_chestViewSplit_resnet-50.pt"


class MissingWeights(InputError, FileNotFoundError):
    pass


def load_xrv_view_model(weights_dir):
    """``xrv.baseline_models.xinario.ViewModel`` with weights read from ``weights_dir``."""
    import torch
    import torchvision
    from torch import nn
    from torchxrayvision.baseline_models.xinario import ViewModel

    path = Path(weights_dir) / XRV_VIEW_FILE
    if not path.is_file():
        raise MissingWeights(
            f"view classifier weights not found: {path}. Download {XRV_VIEW_URL} "
            f"and place it as {path} (config views.xrv_weights_dir), or use views.backend: trained"
        )
    model = ViewModel.__new__(ViewModel)
    nn.Module.__init__(model)
    model.weights_filename_local = str(path)
    model.model = torchvision.models.resnet50()
    model.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.model.eval()
    model.norm = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return model.eval()


def batch(arrs: list[np.ndarray]):
    import torch

    x = np.stack([resize_square(a, 224).astype(np.float32) for a in arrs])
    x = (2.0 * (x / 255.0) - 1.0) * 1024.0
    return torch.from_numpy(x)[:, None]
