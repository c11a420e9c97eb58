"""PetroGold: a gold-standard Universal Dependencies treebank of Portuguese oil-and-gas texts.

``dante-corpora`` 2.0.5 ships it as ``dante/data/petrogold/annotated.conllu`` (9,127 sentences,
19 documents). This module reads it with ``conllu`` into :class:`DependencySentence` objects:
the syntactic words only (multi-word tokens such as ``na`` = ``em`` + ``a`` are represented by
their parts, empty nodes are skipped), each with its head (0 for the root) and UD relation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spigot.experiments.data._resources import MissingDataError, distribution_file, existing_file
from spigot.experiments.data.splits import SplitSpec, check_split

PETROGOLD_DISTRIBUTION = "dante-corpora"
_PETROGOLD = "dante/data/petrogold/annotated.conllu"

#: The fixed split of the sentences (keys are the ``sent_id`` comments).
PETROGOLD_SPLIT = SplitSpec(seed=0, dev=0.1, test=0.1)

#: Sizes that :data:`PETROGOLD_SPLIT` gives on the 9,127 sentences.
PETROGOLD_SIZES = {"train": 7219, "dev": 949, "test": 959}


@dataclass(frozen=True)
class DependencySentence:
    """One gold-annotated sentence of ``n`` syntactic words.

    Attributes
    ----------
    sent_id
        The corpus's sentence id.
    words, upos, relations
        Per-word form, universal part of speech and UD relation (``n`` each).
    heads
        Per-word head: 0 for the root, ``h`` in 1..n for word ``h``.
    """

    sent_id: str
    words: tuple[str, ...]
    upos: tuple[str, ...]
    heads: tuple[int, ...]
    relations: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.words)
        if not (len(self.upos) == len(self.heads) == len(self.relations) == n) or n == 0:
            raise ValueError(
                f"sentence {self.sent_id!r}: words, upos, heads and relations must be "
                "non-empty and of equal length"
            )
        if any(not 0 <= h <= n or h == m for m, h in enumerate(self.heads, start=1)):
            raise ValueError(
                f"sentence {self.sent_id!r}: heads must lie in 0..{n} and differ from the word itself"
            )

    def __len__(self) -> int:
        return len(self.words)


def petrogold_path() -> Path:
    """The installed PetroGold CoNLL-U file (raises :class:`MissingDataError` if absent)."""
    return distribution_file(PETROGOLD_DISTRIBUTION, _PETROGOLD)


def load_petrogold(
    split: str | None = None, path: Path | str | None = None, limit: int | None = None
) -> list[DependencySentence]:
    """Read PetroGold sentences, in file order.

    Parameters
    ----------
    split
        ``"train"``, ``"dev"``, ``"test"`` (see :data:`PETROGOLD_SPLIT`) or ``None`` for all.
    path
        A CoNLL-U file; defaults to the one installed with ``dante-corpora``.
    limit
        Stop after this many sentences of the split (for quick looks and tests).

    Raises
    ------
    MissingDataError
        ``dante-corpora`` or ``conllu`` is not installed, or ``path`` does not exist.
    ValueError
        A sentence has no ``sent_id`` or an inconsistent tree.
    """
    split = check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
    source = petrogold_path() if path is None else existing_file(path, "the CoNLL-U file")
    sentences: list[DependencySentence] = []
    if limit == 0:
        return sentences
    for sentence in _read_conllu(source):
        if split is None or PETROGOLD_SPLIT.assign(sentence.sent_id) == split:
            sentences.append(sentence)
            if limit is not None and len(sentences) >= limit:
                break
    return sentences


def _read_conllu(path: Path) -> Iterator[DependencySentence]:
    try:
        import conllu
    except ImportError:
        raise MissingDataError(
            "reading CoNLL-U needs the `conllu` package; run `make install` (the `data` extra)"
        ) from None
    with open(path, encoding="utf-8") as handle:
        for number, tokens in enumerate(conllu.parse_incr(handle), start=1):
            sent_id = tokens.metadata.get("sent_id")
            if sent_id is None:
                raise ValueError(f"{path}: sentence {number} has no '# sent_id' comment")
            words = [t for t in tokens if isinstance(t["id"], int)]
            yield DependencySentence(
                sent_id=sent_id,
                words=tuple(t["form"] for t in words),
                upos=tuple(t["upos"] for t in words),
                heads=tuple(int(t["head"]) for t in words),
                relations=tuple(t["deprel"] for t in words),
            )
