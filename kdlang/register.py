"""The door user code comes in through: a plugin module calls these when it is imported.

    import kdlang.register as register

    @register.model("acme.segnet_small", input_size=(3, 64, 64))
    def segnet_small(num_classes=10, in_channels=3, width=1):
        return SegNetSmall(num_classes, in_channels, width)

Recipes then name `acme.segnet_small(width=2)`, once the plugin is enabled: `--plugin acme.kd`,
`KDLANG_PLUGINS=acme.kd`, or an installed package's `kdlang.plugins` entry point
(docs/plugins.md). Recipes themselves never import or run code.
"""

from kdlang.library.datasets.base import RawData
from kdlang.library.extensions import PluginError, branch, dataset, loss, model

__all__ = ["PluginError", "RawData", "branch", "dataset", "loss", "model"]
