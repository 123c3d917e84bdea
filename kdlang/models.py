"""`kdlang.models`: the public face of `kdlang.library.models`."""

from kdlang.library.models import *  # noqa: F401,F403
from kdlang.library.models import __all__  # noqa: F401
