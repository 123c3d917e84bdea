"""Model zoo for KD recipes: the CIFAR architectures of the KD literature, two
Fashion-MNIST CNNs, any torchvision classifier as ``tv.<name>``, any timm model as
``timm.<name>`` (when timm is installed), and the tap machinery that lets recipes
name intermediate tensors.

Zoo models share one layout: stages ``layer1``..``layer3``/``layer4``
(``layer5`` for VGG), ``pool`` giving the flattened ``[N, d]`` feature and the
classifier ``fc`` as the last child; ``forward`` returns logits only.
"""

from .registry import ModelInfo, UnknownModelError, architecture, build, info, names, plugin_names
from .taps import TapError, TapInfo, TapRecorder, format_taps, list_taps, resolve
from .timm_models import TimmNotInstalled, timm_available

__all__ = [
    "ModelInfo",
    "TapError",
    "TapInfo",
    "TapRecorder",
    "TimmNotInstalled",
    "UnknownModelError",
    "architecture",
    "build",
    "format_taps",
    "info",
    "list_taps",
    "names",
    "plugin_names",
    "resolve",
    "timm_available",
]
