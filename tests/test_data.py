"""Data utilities on small hand-made inputs: splits, tokenizer, vocabulary, files, trees."""

from __future__ import annotations

import pytest
import torch

from spigot.experiments.data import (
    ROOT,
    DependencySentence,
    MissingDataError,
    SplitSpec,
    Vocabulary,
    WordVectors,
    dependency_batch,
    encode_sentences,
    heads_to_matrix,
    load_glove,
    load_movie_reviews,
    load_petrogold,
    matrix_to_heads,
    pad_indices,
    relation_vocabulary,
    tokenize,
    word_vocabulary,
)
from spigot.experiments.data._resources import distribution_file


# ---------------------------------------------------------------- splits
def test_split_assignment_is_a_pure_function_of_seed_and_key():
    spec = SplitSpec(seed=0, dev=0.1, test=0.1)
    keys = [str(i) for i in range(2000)]
    first = [spec.assign(k) for k in keys]
    assert first == [SplitSpec(seed=0, dev=0.1, test=0.1).assign(k) for k in reversed(keys)][::-1]
    assert first != [SplitSpec(seed=1, dev=0.1, test=0.1).assign(k) for k in keys]
    counts = {s: first.count(s) for s in ("train", "dev", "test")}
    assert 140 < counts["dev"] < 260 and 140 < counts["test"] < 260


def test_split_spec_rejects_bad_fractions():
    with pytest.raises(ValueError, match="dev and test"):
        SplitSpec(seed=0, dev=0.6, test=0.5)
    with pytest.raises(ValueError, match="dev and test"):
        SplitSpec(seed=0, dev=-0.1, test=0.1)


# ---------------------------------------------------------------- tokenizer
@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Doesn't work.", ["does", "n't", "work", "."]),
        ("It's J.R.R. Tolkien's", ["it", "'s", "j.r.r.", "tolkien", "'s"]),
        (
            "''Conan'' -- co-writer 1.5 hours...",
            ["''", "conan", "''", "--", "co-writer", "1.5", "hours", "..."],
        ),
        ("Can't won't we're I'm", ["ca", "n't", "wo", "n't", "we", "'re", "i", "'m"]),
        ("Münch's clichés!", ["münch", "'s", "clichés", "!"]),
    ],
)
def test_tokenize_follows_the_penn_treebank_style_of_glove(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_keeps_case_on_request_and_rejects_non_strings():
    assert tokenize("The Rock", lowercase=False) == ["The", "Rock"]
    with pytest.raises(TypeError, match="text must be a str"):
        tokenize(["a"])


# ---------------------------------------------------------------- vocabulary
def test_vocabulary_orders_by_count_then_alphabet_and_maps_unknowns():
    vocab = Vocabulary.build([["b", "a", "c"], ["a", "c"], ["a"]])
    assert vocab.tokens == ("<pad>", "<unk>", "a", "c", "b")
    assert vocab.encode(["a", "zzz", "b"]) == [2, 1, 4]
    assert Vocabulary.build([["b", "a"], ["a"]], min_count=2).tokens[2:] == ("a",)
    assert Vocabulary.build([["b", "a"]], keep={"b"}).tokens[2:] == ("b",)


def test_vocabulary_rejects_bad_arguments():
    with pytest.raises(ValueError, match="specials must start with"):
        Vocabulary(["a"], specials=("<unk>", "<pad>"))
    with pytest.raises(ValueError, match="tokens must be unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)


def test_embedding_matrix_copies_known_vectors_and_zeroes_padding():
    vectors = WordVectors(("the", "cat"), torch.tensor([[1.0, 2.0], [3.0, 4.0]]).numpy())
    vocab = Vocabulary(["cat", "dog"])
    matrix = vocab.embedding_matrix(vectors, seed=3)
    assert matrix.shape == (4, 2) and matrix.dtype == torch.float32
    assert torch.equal(matrix[0], torch.zeros(2))
    assert torch.equal(matrix[2], torch.tensor([3.0, 4.0]))
    assert torch.equal(matrix, vocab.embedding_matrix(vectors, seed=3))
    assert vocab.coverage(vectors) == 0.5


def test_word_vectors_lookup_and_shape_check():
    vectors = WordVectors(("a", "b"), torch.eye(2).numpy())
    assert "a" in vectors and "z" not in vectors and vectors.dim == 2 and len(vectors) == 2
    assert vectors.lookup(["b"]).tolist() == [[0.0, 1.0]]
    with pytest.raises(KeyError, match="without a vector"):
        vectors.lookup(["z"])
    with pytest.raises(ValueError, match="vectors must have shape"):
        WordVectors(("a",), torch.eye(2).numpy())


def test_pad_and_encode_with_root_keep_lengths_in_words():
    ids, lengths = pad_indices([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    vocab = Vocabulary(["x", "y"], specials=("<pad>", "<unk>", ROOT))
    ids, lengths = encode_sentences([["x", "y"], ["y"]], vocab, add_root=True)
    assert ids.tolist() == [[2, 3, 4], [2, 4, 0]] and lengths.tolist() == [2, 1]
    with pytest.raises(ValueError, match="add_root=True needs"):
        encode_sentences([["x"]], Vocabulary(["x"]), add_root=True)


# ---------------------------------------------------------------- trees
def test_heads_matrix_round_trip_and_convention():
    heads = [2, 0, 2]  # word 2 is the root; words 1 and 3 attach to it
    matrix = heads_to_matrix(heads, size=5)
    assert matrix.shape == (5, 5)
    assert matrix[0, 2] == 1 and matrix[2, 1] == 1 and matrix[2, 3] == 1 and matrix.sum() == 3
    assert matrix[:, 0].sum() == 0 and torch.diagonal(matrix).sum() == 0
    assert matrix_to_heads(matrix, 3) == heads
    with pytest.raises(ValueError, match="heads must lie in"):
        heads_to_matrix([4, 0])
    with pytest.raises(ValueError, match="size must be at least"):
        heads_to_matrix([0, 1], size=2)
    with pytest.raises(ValueError, match="exactly one arc"):
        matrix_to_heads(torch.zeros(3, 3), 2)


def _sentence(sent_id, words, heads, relations):
    return DependencySentence(
        sent_id, tuple(words), tuple("X" for _ in words), tuple(heads), tuple(relations)
    )


def test_dependency_batch_pads_trees_relations_and_words():
    sentences = [
        _sentence("a", ["O", "poço"], [2, 0], ["det", "root"]),
        _sentence("b", ["Rochas", "de", "Pelotas"], [0, 3, 1], ["root", "case", "nmod"]),
    ]
    words, relations = word_vocabulary(sentences), relation_vocabulary(sentences)
    batch = dependency_batch(sentences, words, relations)
    assert batch.word_ids.shape == (2, 4) and batch.heads.shape == (2, 4, 4) and len(batch) == 2
    assert batch.lengths.tolist() == [2, 3]
    assert batch.word_ids[:, 0].tolist() == [words.index(ROOT)] * 2
    assert batch.word_ids[0, 1] == words.index("o")
    assert matrix_to_heads(batch.heads[1], 3) == [0, 3, 1]
    assert batch.heads[0, 3].sum() == 0 and batch.heads[0, :, 3].sum() == 0
    assert batch.relation_ids[0].tolist() == [0, relations.index("det"), relations.index("root"), 0]


def test_dependency_sentence_validates_trees():
    with pytest.raises(ValueError, match="heads must lie in"):
        _sentence("bad", ["a", "b"], [0, 5], ["root", "dep"])
    with pytest.raises(ValueError, match="equal length"):
        DependencySentence("bad", ("a",), (), (0,), ("root",))


# ---------------------------------------------------------------- files
def test_movie_review_file_is_parsed_and_zero_ratings_dropped(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_bytes(
        "1\t2.5\tGreat fun.\r\n2\t0.0\tA movie.\r\n3\t-1.25\tTepid biopic\r\n".encode()
    )
    sentences = load_movie_reviews(path=path)
    assert [(s.id, s.text, s.rating, s.label) for s in sentences] == [
        (1, "Great fun.", 2.5, 1),
        (3, "Tepid biopic", -1.25, 0),
    ]
    split = {s.id for part in ("train", "dev", "test") for s in load_movie_reviews(part, path=path)}
    assert split == {1, 3}


def test_malformed_movie_review_line_names_the_line(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("1\t2.5\n")
    with pytest.raises(ValueError, match="reviews.txt:1: expected 'id<TAB>rating<TAB>text'"):
        load_movie_reviews(path=path)
    path.write_text("1\t2.5\tfine\nx\tgood\tbad\n")
    with pytest.raises(ValueError, match="reviews.txt:2: the id must be an integer"):
        load_movie_reviews(path=path)


def test_petrogold_reader_uses_syntactic_words_only(tmp_path):
    path = tmp_path / "tiny.conllu"
    path.write_text(
        "# sent_id = doc-1\n"
        "# text = Está na costa\n"
        "1\tEstá\testar\tVERB\t_\t_\t0\troot\t_\t_\n"
        "2-3\tna\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "2\tem\tem\tADP\t_\t_\t4\tcase\t_\t_\n"
        "3\ta\to\tDET\t_\t_\t4\tdet\t_\t_\n"
        "4\tcosta\tcosta\tNOUN\t_\t_\t1\tobl\t_\t_\n"
        "4.1\tvazio\t_\tNOUN\t_\t_\t_\t_\t1:dep\t_\n"
        "\n",
        encoding="utf-8",
    )
    (sentence,) = load_petrogold(path=path)
    assert sentence.sent_id == "doc-1"
    assert sentence.words == ("Está", "em", "a", "costa")
    assert sentence.heads == (0, 4, 4, 1)
    assert sentence.relations == ("root", "case", "det", "obl")
    assert load_petrogold(path=path, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        load_petrogold(path=path, limit=-1)
    with pytest.raises(ValueError, match="split must be one of"):
        load_petrogold("validation", path=path)


def test_petrogold_reader_requires_sentence_ids(tmp_path):
    path = tmp_path / "noid.conllu"
    path.write_text("1\tSim\tsim\tINTJ\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(ValueError, match="no '# sent_id'"):
        load_petrogold(path=path)


def test_missing_data_names_the_install_command(tmp_path):
    with pytest.raises(MissingDataError, match="make install"):
        load_movie_reviews(path=tmp_path / "absent.txt")
    with pytest.raises(MissingDataError, match="make install"):
        load_petrogold(path=tmp_path / "absent.conllu")
    with pytest.raises(MissingDataError, match="make install"):
        load_glove(tmp_path)
    with pytest.raises(
        MissingDataError, match="'no-such-distribution-xyz' is not installed.*make install"
    ):
        distribution_file("no-such-distribution-xyz", "data.txt")
    with pytest.raises(MissingDataError, match="missing from the installed pytest"):
        distribution_file("pytest", "pytest/no_such_data_file.txt")
    assert issubclass(MissingDataError, FileNotFoundError)
