"""What a ``spigot`` subcommand is, and the argument types the subcommands share.

Below :mod:`spigot.cli`, so that the modules defining subcommands (the study, the benchmarks)
never import the command line itself; :mod:`spigot.cli` lists them in its command table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand of ``spigot``.

    Attributes
    ----------
    name
        The word after ``spigot``.
    help
        One line, shown by ``spigot --help``.
    configure
        Adds the command's arguments to its (sub)parser.
    run
        Runs it with the parsed arguments and its parser (for ``parser.error``); returns the
        exit status.
    description
        Longer text for ``spigot NAME --help`` (default: ``help``).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int]
    description: str = ""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
