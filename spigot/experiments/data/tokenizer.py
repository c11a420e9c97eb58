"""A small English word tokenizer that splits text the way GloVe 6B's vocabulary expects.

GloVe 6B was trained on lower-cased text tokenized in the Penn Treebank style: clitics are
split off (``doesn't`` -> ``does n't``, ``it's`` -> ``it 's``), hyphenated words and
abbreviations with inner periods stay whole (``co-writer``, ``u.s.``), and quotes are ``''``
or ``````. :func:`tokenize` reproduces those decisions with a few regular expressions.
"""

from __future__ import annotations

import re

_NEGATION = re.compile(r"(?<=\w)n't\b")
_CLITIC = re.compile(r"(?<=\w)'(s|re|ll|ve|d|m)\b")
_TOKEN = re.compile(
    r"n't|'(?:s|re|ll|ve|d|m)\b"  # clitics split off above
    r"|(?:\w\.){2,}"  # abbreviations: u.s., j.r.r.
    r"|\w+(?:[-.']\w+)*"  # words, numbers, hyphenated words
    r"|''|``|\.\.\.|--"  # multi-character punctuation
    r"|[^\w\s]"  # any other symbol
)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split ``text`` into tokens (lower-cased unless ``lowercase=False``).

    Examples
    --------
    >>> tokenize("It doesn't feel like ''Conan'' -- it's U.S. fun.")
    ['it', 'does', "n't", 'feel', 'like', "''", 'conan', "''", '--', 'it', "'s", 'u.s.', 'fun', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if lowercase:
        text = text.lower()
    text = _NEGATION.sub(" n't", text)
    text = _CLITIC.sub(r" '\1", text)
    return _TOKEN.findall(text)
