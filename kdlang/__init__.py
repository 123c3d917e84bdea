"""kdlang: declarative knowledge-distillation recipes, checked before they train."""

__version__ = "0.1.0"
