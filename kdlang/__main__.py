"""`python -m kdlang` is the `kdlang` command."""

import sys

from kdlang.cli import main

sys.exit(main())
