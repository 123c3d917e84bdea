"""kdlang's version, at the bottom of the layering so every layer can name it."""

__version__ = "0.1.0"
