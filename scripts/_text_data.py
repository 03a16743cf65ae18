"""The synthetic text-embedding data of the text benchmarks (bench_text.py, bench_dask.py): one definition.

A vocabulary of random lowercase words (2-10 letters), random 300-dim float32 vectors, and sentences of
5-40 vocabulary words with about 3% unknown words (a word with "xq" appended), all from one seeded
generator, so every benchmark embeds the same sentences with the same module.
"""

from __future__ import annotations

import numpy as np

NUM_OOV_BUCKETS = 10


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < n:
        for length in rng.integers(2, 11, size=n - len(words) + 100):
            words.add("".join(rng.choice(letters, size=length)))
    return sorted(words)[:n]


def random_sentences(rng: np.random.Generator, words: list[str], n: int) -> list[str]:
    vocab = np.array(words, dtype=object)
    out = []
    for length in rng.integers(5, 41, size=n):
        tokens = list(vocab[rng.integers(0, len(vocab), size=length)])
        for i in np.flatnonzero(rng.random(length) < 0.03):
            tokens[i] = tokens[i] + "xq"  # an unknown word
        out.append(" ".join(tokens))
    return out


def text_data(rng: np.random.Generator, vocab: int, dim: int, sentences: int) -> tuple[list[str], np.ndarray, list[str]]:
    """The words, their ``[vocab, dim]`` float32 vectors and ``sentences`` sentences, drawn in that order."""
    words = random_words(rng, vocab)
    embeddings = rng.normal(size=(vocab, dim)).astype(np.float32)
    return words, embeddings, random_sentences(rng, words, sentences)
