"""Where the installed data lives, and the error raised when it is not there.

The data sets ship inside packages from the package index (see the ``data`` extra in
``pyproject.toml``); nothing is downloaded at run time. Files are located through the installed
distribution's metadata, so the packages are never imported (``dante-corpora`` imports pandas
and ``pkg_resources`` on import). The movie-review sentences exist only in the source
distribution of ``vaderSentiment`` 3.3.2; ``scripts/install.sh`` extracts that one file into the
environment at install time, under :data:`SHARED_DATA_DIR`.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

#: The command that installs every data set the experiments read.
INSTALL_COMMAND = "make install"

#: Files that the install step extracts from source distributions live here.
SHARED_DATA_DIR = Path(sys.prefix) / "share" / "spigot-toolkit"


class MissingDataError(FileNotFoundError):
    """A data set the experiments need is not installed; the message names the install command."""


def distribution_file(distribution: str, relative: str) -> Path:
    """The path of ``relative`` inside the installed ``distribution``.

    Parameters
    ----------
    distribution
        Name of the distribution on the package index, e.g. ``"dante-corpora"``.
    relative
        Path of the file relative to site-packages, e.g. ``"dante/data/petrogold/annotated.conllu"``.

    Raises
    ------
    MissingDataError
        The distribution is not installed, or does not contain the file.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise MissingDataError(
            f"the package {distribution!r} is not installed; run `{INSTALL_COMMAND}` "
            "(it installs spigot-toolkit's `data` extra)"
        ) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise MissingDataError(
            f"{relative!r} is missing from the installed {distribution} {dist.version} "
            f"(looked at {path}); reinstall it with `{INSTALL_COMMAND}`"
        )
    return path


def is_installed(distribution: str) -> bool:
    """Whether ``distribution`` is installed in this environment."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def existing_file(path: Path | str, what: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a file, else raise :class:`MissingDataError`."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{what} not found at {path}; run `{INSTALL_COMMAND}` to install it")
    return path
