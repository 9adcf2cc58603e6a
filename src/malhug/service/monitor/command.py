"""Placeholder until the command is built (owned by its module's author)."""
from __future__ import annotations


def add_arguments(parser) -> None:
    pass


def main(args, settings) -> int:
    raise NotImplementedError
