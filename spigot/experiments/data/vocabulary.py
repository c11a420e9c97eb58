"""Token vocabularies, embedding matrices over GloVe, and padded index tensors.

Index 0 is always the padding token, 1 the unknown token; tree data adds a root token (see
:data:`ROOT`), placed at position 0 of every sentence so that token ``i`` is node ``i`` of the
dependency convention (node 0 the root, words 1..n).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Sequence

import numpy as np
import torch

from spigot.experiments.data.glove import WordVectors

PAD = "<pad>"
UNK = "<unk>"
ROOT = "<root>"


class Vocabulary:
    """A fixed list of tokens, each with an index; unknown tokens map to :data:`UNK`.

    Parameters
    ----------
    tokens
        The regular tokens, in index order after the specials; duplicates are an error.
    specials
        Tokens placed first; must start with :data:`PAD` and :data:`UNK`.
    """

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = (PAD, UNK)) -> None:
        specials = tuple(specials)
        if specials[:2] != (PAD, UNK):
            raise ValueError(f"specials must start with {(PAD, UNK)}, got {specials}")
        self.tokens: tuple[str, ...] = specials + tuple(tokens)
        self._index = {token: i for i, token in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            seen: Counter[str] = Counter(self.tokens)
            raise ValueError(
                f"tokens must be unique, repeated: {[t for t, c in seen.items() if c > 1][:5]}"
            )
        self.specials = specials

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        min_count: int = 1,
        keep: Container[str] | None = None,
        specials: Sequence[str] = (PAD, UNK),
    ) -> Vocabulary:
        """The tokens of ``sentences`` seen at least ``min_count`` times (and in ``keep``, if given).

        Tokens are ordered by decreasing count, ties alphabetically, so the result does not
        depend on the order of the sentences.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        counts = Counter(token for sentence in sentences for token in sentence)
        chosen = [
            token
            for token, count in counts.items()
            if count >= min_count and (keep is None or token in keep) and token not in specials
        ]
        chosen.sort(key=lambda token: (-counts[token], token))
        return cls(chosen, specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, specials={self.specials})"

    @property
    def pad_index(self) -> int:
        return 0

    @property
    def unk_index(self) -> int:
        return 1

    def index(self, token: str) -> int:
        """Index of ``token``, or of :data:`UNK` when it is unknown."""
        return self._index.get(token, 1)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Indices of ``tokens``."""
        return [self._index.get(token, 1) for token in tokens]

    def embedding_matrix(self, vectors: WordVectors, seed: int = 0) -> torch.Tensor:
        """Float32 tensor ``(len(self), vectors.dim)`` to initialise an embedding layer.

        Tokens with a GloVe vector get it; :data:`PAD` gets zeros; every other token (the
        unknown and root tokens, words without a vector) gets a draw from a normal distribution
        whose standard deviation is that of the entries of the 10,000 first (most frequent)
        vectors, from a generator seeded by ``seed``.
        """
        generator = np.random.default_rng(seed)
        scale = float(np.asarray(vectors.vectors[:10000]).std())
        matrix = generator.normal(0.0, scale, size=(len(self), vectors.dim)).astype(np.float32)
        matrix[0] = 0.0
        known = [i for i, token in enumerate(self.tokens) if token in vectors and i > 0]
        if known:
            matrix[known] = vectors.lookup(self.tokens[i] for i in known)
        return torch.from_numpy(matrix)

    def coverage(self, vectors: WordVectors) -> float:
        """Fraction of the regular (non-special) tokens that have a vector."""
        regular = self.tokens[len(self.specials) :]
        return sum(token in vectors for token in regular) / max(len(regular), 1)


def pad_indices(
    sequences: Sequence[Sequence[int]], pad: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad integer sequences into a ``(B, T)`` int64 tensor; return it and the ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    width = int(lengths.max()) if len(sequences) else 0
    out = torch.full((len(sequences), width), pad, dtype=torch.int64)
    for i, sequence in enumerate(sequences):
        out[i, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.int64)
    return out, lengths


def encode_sentences(
    sentences: Sequence[Sequence[str]], vocabulary: Vocabulary, add_root: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices ``(B, T)`` (padded with 0) and word counts ``(B,)`` of tokenised sentences.

    With ``add_root=True`` (``vocabulary`` must then contain :data:`ROOT`), every row starts
    with the root token, so that ``T = max(n) + 1`` and token ``i`` is tree node ``i``;
    ``lengths`` still counts the words only, as in the dependency convention.
    """
    if add_root and ROOT not in vocabulary:
        raise ValueError(
            f"add_root=True needs a vocabulary with the {ROOT!r} token among its specials"
        )
    prefix = [vocabulary.index(ROOT)] if add_root else []
    ids, lengths = pad_indices([prefix + vocabulary.encode(s) for s in sentences])
    return ids, lengths - len(prefix)
