"""Exports a text-embedding module from a word-embedding text file (GloVe or word2vec text format).

Usage::

    python scripts/export_text_embedding.py --embedding-file glove.6B.50d.txt --export-path /tmp/glove50 \\
        [--num-oov-buckets N] [--preprocess]

The input has one word per line followed by its vector (``word 0.1 -0.2 ...``); a word2vec header
line (``<count> <dim>``) is skipped. The module follows the text-embedding common signature
(docs/common_signatures.md):

- ``default``: ``sentences`` string ``[None]`` -> ``default`` float32 ``[None, dim]``: each sentence
  is split on whitespace, its tokens looked up in the vocabulary (an asset of the module), and
  their vectors combined with ``sqrtn`` (sum / sqrt(number of tokens)); a sentence without tokens
  gives zeros. Unknown words are hashed into ``--num-oov-buckets`` extra rows, which start at zero
  (so an all-unknown sentence also gives zeros until fine-tuned); without buckets they are skipped.
- ``tokens``: ``sentences`` -> ``default`` int64 ``[None]`` the ids of all tokens, ``row_ids`` int64
  ``[None]`` the sentence of each id, ``num_rows`` int64 ``[]``.

``--preprocess`` lower-cases and deletes punctuation (``[^\\w\\s]``) before splitting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import hubkit as hk

VOCAB_ASSET = "tokens.txt"


def read_embedding_file(path: str) -> tuple[list[str], np.ndarray]:
    """Words and a float32 ``[len(words), dim]`` matrix from a GloVe/word2vec text file.

    Raises:
        hubkit.FormatError: an empty file, a line with the wrong number of values, or a word
            containing whitespace that a whitespace tokenizer could never produce.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if lines and len(lines[0].split()) == 2 and all(p.isdigit() for p in lines[0].split()):
        lines = lines[1:]  # word2vec header: "<count> <dim>"
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise hk.FormatError(f"Embedding file {path!r} holds no vectors.")
    words, rests = [], []
    for line in lines:
        word, _, rest = line.rstrip().partition(" ")
        words.append(word)
        rests.append(rest)
    dim = len(rests[0].split())
    values = np.array(" ".join(rests).split(), dtype=np.float32)
    if dim == 0 or values.size != dim * len(words):
        counts = [len(r.split()) for r in rests]
        bad = next(i for i, c in enumerate(counts) if c != dim) if dim else 0
        raise hk.FormatError(
            f"Embedding file {path!r}: line for word {words[bad]!r} has {counts[bad]} values; expected {dim}."
        )
    if len(set(words)) != len(words):
        seen: set[str] = set()
        dup = next(w for w in words if w in seen or seen.add(w))
        raise hk.FormatError(f"Embedding file {path!r} lists the word {dup!r} twice.")
    return words, values.reshape(len(words), dim)


def make_module_spec(vocab_file: str, embeddings: np.ndarray, num_oov_buckets: int, preprocess: bool) -> hk.ModuleSpec:
    """The spec of a text-embedding module over ``embeddings`` (rows in the order of ``vocab_file``)."""
    table_rows = np.concatenate([embeddings, np.zeros((num_oov_buckets, embeddings.shape[1]), np.float32)])

    def module_fn() -> None:
        sentences = hk.placeholder(hk.string, [None], name="sentences")
        table = hk.text.vocabulary_table(hk.add_asset(vocab_file), num_oov_buckets=num_oov_buckets)
        ids = table.tokenize_and_lookup(sentences, lower=preprocess, strip_punctuation=preprocess)
        weights = hk.Variable(table_rows, name="embeddings")
        combined = hk.nn.embedding_lookup_sparse(weights, ids, combiner="sqrtn")
        hk.add_signature("default", {"sentences": sentences}, {"default": combined})
        hk.add_signature(
            "tokens", {"sentences": sentences}, {"default": ids.values, "row_ids": ids.row_ids, "num_rows": ids.num_rows}
        )

    return hk.create_module_spec(module_fn)


def export_words(words: list[str], embeddings: np.ndarray, export_path: str, num_oov_buckets: int = 0,
                 preprocess: bool = False) -> None:
    """Exports the module for ``words`` and their ``embeddings`` to ``export_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = os.path.join(tmp, VOCAB_ASSET)
        with open(vocab_file, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(words) + "\n")
        spec = make_module_spec(vocab_file, embeddings, num_oov_buckets, preprocess)
        hk.Module(spec).export(export_path)


def export(embedding_file: str, export_path: str, num_oov_buckets: int = 0, preprocess: bool = False) -> None:
    """Reads ``embedding_file`` and exports the text-embedding module to ``export_path``."""
    words, embeddings = read_embedding_file(embedding_file)
    export_words(words, embeddings, export_path, num_oov_buckets, preprocess)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedding-file", required=True, help="word-embedding text file (GloVe/word2vec format)")
    parser.add_argument("--export-path", required=True, help="directory to create (must not exist or be empty)")
    parser.add_argument("--num-oov-buckets", type=int, default=0, help="rows for hashed unknown words (default 0)")
    parser.add_argument("--preprocess", action="store_true", help="lower-case and delete punctuation first")
    args = parser.parse_args(argv)
    if args.num_oov_buckets < 0:
        parser.error("--num-oov-buckets must be >= 0")
    try:
        export(args.embedding_file, args.export_path, args.num_oov_buckets, args.preprocess)
    except (hk.HubkitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {args.export_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
