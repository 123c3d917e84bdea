"""`kdlang.datasets`: the public face of `kdlang.library.datasets`."""

from kdlang.library.datasets import *  # noqa: F401,F403
from kdlang.library.datasets import __all__  # noqa: F401
