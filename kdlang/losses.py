"""`kdlang.losses`: the public face of `kdlang.library.losses`."""

from kdlang.library.losses import *  # noqa: F401,F403
from kdlang.library.losses import __all__  # noqa: F401
