"""The command-line commands that need more than a few lines: the top layer, above the runtime."""
