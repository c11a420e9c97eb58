"""Sentence-level movie-review snippets with human sentiment ratings (Hutto and Gilbert, 2014).

The file ``movieReviewSnippets_GroundTruth.txt`` of the VADER paper's data
(``additional_resources/hutto_ICWSM_2014.tar.gz`` in the source distribution of
``vaderSentiment`` 3.3.2) holds 10,605 sentences from Pang and Lee's movie reviews, each with
the mean of at least 20 ratings on a -4..4 scale. The label is the rating's sign; the 37
sentences rated exactly 0 have no label and are dropped, leaving 10,568.

``scripts/install.sh`` extracts the file to :data:`MOVIE_REVIEWS_FILE` at install time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spigot.experiments.data._resources import SHARED_DATA_DIR, existing_file
from spigot.experiments.data.splits import SplitSpec, check_split

#: Where ``scripts/install.sh`` puts the file extracted from vaderSentiment 3.3.2's sdist.
MOVIE_REVIEWS_FILE = (
    SHARED_DATA_DIR / "vaderSentiment-3.3.2" / "movieReviewSnippets_GroundTruth.txt"
)

#: The fixed split of the labelled sentences (keys are the file's sentence ids).
MOVIE_REVIEWS_SPLIT = SplitSpec(seed=0, dev=0.1, test=0.1)

#: Sizes that :data:`MOVIE_REVIEWS_SPLIT` gives on the 10,568 labelled sentences.
MOVIE_REVIEWS_SIZES = {"train": 8427, "dev": 1113, "test": 1028}


@dataclass(frozen=True)
class RatedSentence:
    """One snippet: its id in the file, its text, and its mean rating (non-zero)."""

    id: int
    text: str
    rating: float

    @property
    def label(self) -> int:
        """1 for a positive rating, 0 for a negative one."""
        return int(self.rating > 0)


def load_movie_reviews(
    split: str | None = None, path: Path | str | None = None
) -> list[RatedSentence]:
    """Read the labelled movie-review sentences, in file order.

    Parameters
    ----------
    split
        ``"train"``, ``"dev"``, ``"test"`` (see :data:`MOVIE_REVIEWS_SPLIT`), or ``None`` for all.
    path
        The ground-truth file; defaults to :data:`MOVIE_REVIEWS_FILE`.

    Raises
    ------
    MissingDataError
        The file is not there (the install step did not run).
    ValueError
        A line of the file is not ``id<TAB>rating<TAB>text``.
    """
    split = check_split(split)
    source = existing_file(
        path if path is not None else MOVIE_REVIEWS_FILE, "the movie-review sentences"
    )
    sentences = []
    with open(source, encoding="utf-8", newline="") as handle:
        lines = [line.removesuffix("\r") for line in handle.read().split("\n")]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(
                f"{source}:{number}: expected 'id<TAB>rating<TAB>text', got {len(fields)} fields"
            )
        try:
            sentence = RatedSentence(int(fields[0]), fields[2].strip(), float(fields[1]))
        except ValueError:
            raise ValueError(
                f"{source}:{number}: the id must be an integer and the rating a number, "
                f"got {fields[0]!r} and {fields[1]!r}"
            ) from None
        if sentence.rating == 0:
            continue
        if split is None or MOVIE_REVIEWS_SPLIT.assign(str(sentence.id)) == split:
            sentences.append(sentence)
    return sentences
