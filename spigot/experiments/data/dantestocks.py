"""DANTEStocks: Portuguese stock-market tweets with emotion annotations, and a JOY-vs-SAD label.

``dante-corpora`` 2.0.5 ships, under ``dante/data/dantestocks/``:

- ``emotion.csv``: one row per annotated tweet (4,517 rows), the four opposed emotion pairs of
  Plutchik's wheel as one column per emotion (``TRU``/``DIS``, ``JOY``/``SAD``, ``ANT``/``SUR``,
  ``ANG``/``FEA``), a ``NEUTRAL`` column, per-pair annotator agreement (``Conf_Joy_Sad``, ...)
  and the number of annotators;
- ``POS.conllu``: the tokenisation and universal part of speech of 4,048 of those tweets (no
  heads, no relations).

The values of the ``JOY`` and ``SAD`` columns, counted on the installed file: ``(1, 0)`` 531
rows, ``(0, 1)`` 437, ``(0, 0)`` 2,339, and two codes that always appear on both columns of the
pair at once: ``(-1, -1)`` 379 rows (pair agreement 0.667 or 1.0) and ``(-2, -2)`` 831 rows
(pair agreement at most 0.5). :func:`joy_sad_label` reads them as follows (the only reading
this module relies on):

- **JOY** (label 1): ``JOY = 1`` and ``SAD = 0``, the annotators' majority marked joy and not sadness;
- **SAD** (label 0): ``SAD = 1`` and ``JOY = 0``;
- **no label** (the tweet is left out): ``(0, 0)`` (neither emotion: neutral tweets and tweets
  with other emotions only), and both codes ``-1`` and ``-2`` on the pair (annotators who did not
  settle on one side; the file does not say more). The ``NEUTRAL`` flag is not consulted: a
  tweet with a JOY or SAD majority keeps its label whatever that flag says.

:func:`load_dantestocks` joins the two files on the tweet id and returns the labeled tweets that
have a tokenisation (849 of them: 461 JOY, 388 SAD on the installed file; the split
:data:`DANTESTOCKS_SPLIT` gives 497 / 182 / 170 train / dev / test tweets).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spigot.experiments.data._resources import distribution_file, existing_file
from spigot.experiments.data.splits import SplitSpec, check_split

DANTESTOCKS_DISTRIBUTION = "dante-corpora"
_EMOTIONS = "dante/data/dantestocks/emotion.csv"
_TOKENS = "dante/data/dantestocks/POS.conllu"

#: The label of a JOY tweet (SAD is 0).
JOY = 1
#: The label of a SAD tweet.
SAD = 0

#: The fixed split of the labeled tweets (keys are the tweet ids).
DANTESTOCKS_SPLIT = SplitSpec(seed=0, dev=0.2, test=0.2)


@dataclass(frozen=True)
class EmotionTweet:
    """One tokenised tweet with its JOY-vs-SAD label.

    Attributes
    ----------
    tweet_id
        The corpus's id (``dante_01_...``).
    words, upos
        Per-token form and universal part of speech.
    label
        :data:`JOY` (1) or :data:`SAD` (0).
    agreement
        The annotators' agreement on the JOY/SAD pair (``Conf_Joy_Sad``).
    """

    tweet_id: str
    words: tuple[str, ...]
    upos: tuple[str, ...]
    label: int
    agreement: float

    def __len__(self) -> int:
        return len(self.words)


def joy_sad_label(joy: int, sad: int) -> int | None:
    """The label of a tweet from its ``JOY`` and ``SAD`` columns: :data:`JOY`, :data:`SAD`, or
    ``None`` (no label; see the module for the codes).

    Raises
    ------
    ValueError
        A value is not one of the codes the file uses (1, 0, -1, -2).
    """
    for name, value in (("joy", joy), ("sad", sad)):
        if value not in (1, 0, -1, -2):
            raise ValueError(f"{name} must be one of the codes 1, 0, -1, -2, got {value!r}")
    if (joy, sad) == (1, 0):
        return JOY
    if (joy, sad) == (0, 1):
        return SAD
    return None


def load_dantestocks(
    split: str | None = None,
    emotions: Path | str | None = None,
    tokens: Path | str | None = None,
) -> list[EmotionTweet]:
    """The labeled, tokenised DANTEStocks tweets, in the order of the CoNLL-U file.

    Parameters
    ----------
    split
        ``"train"``, ``"dev"``, ``"test"`` (see :data:`DANTESTOCKS_SPLIT`) or ``None`` for all.
    emotions, tokens
        The annotation CSV and the CoNLL-U file; default: those installed with ``dante-corpora``.

    Raises
    ------
    MissingDataError
        ``dante-corpora`` is not installed, or a given path does not exist.
    ValueError
        A row has an unknown code, or a tweet id repeats.
    """
    split = check_split(split)
    emotion_path = (
        distribution_file(DANTESTOCKS_DISTRIBUTION, _EMOTIONS)
        if emotions is None
        else existing_file(emotions, "the DANTEStocks emotion CSV")
    )
    token_path = (
        distribution_file(DANTESTOCKS_DISTRIBUTION, _TOKENS)
        if tokens is None
        else existing_file(tokens, "the DANTEStocks CoNLL-U file")
    )
    labels = _read_labels(emotion_path)
    tweets = []
    for tweet_id, words, upos in _read_tokens(token_path):
        if tweet_id not in labels:
            continue
        if split is not None and DANTESTOCKS_SPLIT.assign(tweet_id) != split:
            continue
        label, agreement = labels[tweet_id]
        tweets.append(EmotionTweet(tweet_id, words, upos, label, agreement))
    return tweets


def _read_labels(path: Path) -> dict[str, tuple[int, float]]:
    """Tweet id -> (label, JOY/SAD agreement) for the rows that get a label."""
    labels: dict[str, tuple[int, float]] = {}
    seen: set[str] = set()
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            tweet_id = row["Tweet_ID"]
            if tweet_id in seen:
                raise ValueError(f"{path}: line {number}: tweet id {tweet_id!r} repeats")
            seen.add(tweet_id)
            try:
                label = joy_sad_label(int(row["JOY"]), int(row["SAD"]))
            except ValueError as error:
                raise ValueError(f"{path}: line {number}: {error}") from None
            if label is not None:
                labels[tweet_id] = (label, float(row["Conf_Joy_Sad"]))
    return labels


def _read_tokens(path: Path) -> Iterator[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """``(tweet id, forms, UPOS)`` of every sentence of a CoNLL-U file without trees."""
    tweet_id: str | None = None
    words: list[str] = []
    upos: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# sent_id"):
                tweet_id = line.split("=", 1)[1].strip()
            elif line.startswith("#"):
                continue
            elif not line.strip():
                if tweet_id is not None and words:
                    yield tweet_id, tuple(words), tuple(upos)
                tweet_id, words, upos = None, [], []
            else:
                fields = line.split("\t")
                if "-" in fields[0] or "." in fields[0]:
                    continue  # multi-word tokens and empty nodes
                words.append(fields[1])
                upos.append(fields[3])
    if tweet_id is not None and words:
        yield tweet_id, tuple(words), tuple(upos)
