"""A stand-in `torchvision.datasets` for download tests: the real one would reach the network."""

import sys
import types


def install(monkeypatch, **dataset_classes) -> types.ModuleType:
    """Make `import torchvision.datasets` give a module holding `dataset_classes` (for this test
    only); returns it, so a test can swap a class later."""
    datasets = types.ModuleType("torchvision.datasets")
    for name, cls in dataset_classes.items():
        setattr(datasets, name, cls)
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return datasets
