"""Compiled stages used from other training frameworks (`kdlang.integrations.lightning`).

Each integration imports its framework only when imported itself, so kdlang never needs it.
"""
