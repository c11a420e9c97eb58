"""Fixed train/dev/test splits that do not depend on library versions or file order.

Each item has a stable key (a sentence id). Its split is decided by hashing the key with the
split's seed (SHA-256, read as a number in [0, 1)): the assignment never changes with numpy's
or torch's random streams, with the order the items are read in, or with a subset being read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: The split names, in the order tables list them.
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitSpec:
    """A seeded, hash-based assignment of keys to ``train``, ``dev`` and ``test``.

    Attributes
    ----------
    seed
        Salt of the hash; a different seed gives an independent split.
    dev, test
        Fractions of the items expected in the dev and test sets (the rest is train).
    """

    seed: int
    dev: float
    test: float

    def __post_init__(self) -> None:
        if not (0 <= self.dev and 0 <= self.test and self.dev + self.test < 1):
            raise ValueError(
                f"dev and test must be non-negative fractions summing to less than 1, "
                f"got dev={self.dev!r}, test={self.test!r}"
            )

    def assign(self, key: str) -> str:
        """The split (``"train"``, ``"dev"`` or ``"test"``) that ``key`` belongs to."""
        digest = hashlib.sha256(f"{self.seed}:{key}".encode("utf-8")).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        if u < self.test:
            return "test"
        if u < self.test + self.dev:
            return "dev"
        return "train"


def check_split(split: str | None) -> str | None:
    """Validate a split name (``None`` means every item)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    return split
