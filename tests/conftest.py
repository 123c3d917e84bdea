"""Every test verifies the IR after each pass (`kdlang.ir.passes`), as `--debug` does for users."""

import os

os.environ.setdefault("KDLANG_VERIFY_IR", "1")
