"""Exports a text-embedding module from a word-embedding text file (GloVe or word2vec text format).

Usage::

    python scripts/export_text_embedding.py --embedding-file glove.6B.50d.txt --export-path /tmp/glove50 \\
        [--num-oov-buckets N] [--preprocess]

The input is UTF-8 text with one word per line followed by its vector, separated by single spaces
(``word 0.1 -0.2 ...``); a word2vec header line (``<count> <dim>``) is checked and skipped. A bad
file (not UTF-8, a word containing whitespace, a value that is not a finite number, lines of
different lengths, a word listed twice) stops the script with one ``error:`` line naming the line. The module follows the text-embedding common signature
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
from pathlib import Path

import numpy as np

import hubkit as hk

_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:  # scripts/ helpers, also when this file is loaded by path
    sys.path.insert(0, _SCRIPTS)
from _cli_errors import run_cli  # noqa: E402

VOCAB_ASSET = "tokens.txt"


def _decode(path: str, data: bytes) -> str:
    """The UTF-8 text of ``data`` without a leading byte-order mark; FormatError naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise hk.FormatError(
            f"Embedding file {path!r}: line {line} is not UTF-8 text (byte 0x{data[e.start]:02x}); "
            "save the file as UTF-8."
        ) from None


def _is_header(line: str) -> bool:
    parts = line.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _parse_line(path: str, number: int, line: str) -> tuple[str, list[str]]:
    """(word, value fields) of one line; the word is everything before the first space."""
    word, _, rest = line.rstrip().partition(" ")
    if not word:
        raise hk.FormatError(f"Embedding file {path!r}: line {number} starts with a space, so its word is empty.")
    if any(ch.isspace() for ch in word):
        raise hk.FormatError(
            f"Embedding file {path!r}: line {number}: the word {word!r} contains whitespace, which a whitespace "
            "tokenizer never produces (fields must be separated by single spaces)."
        )
    return word, rest.split()


def read_embedding_file(path: str) -> tuple[list[str], np.ndarray]:
    """Words and a float32 ``[len(words), dim]`` matrix from a GloVe/word2vec text file.

    The file is UTF-8 (a leading byte-order mark is ignored), one ``word v1 v2 ...`` line per word
    separated by single spaces; blank lines are skipped and a word2vec header (``<count> <dim>``)
    is checked against the vectors.

    Raises:
        hubkit.FormatError: naming the line: text that is not UTF-8, an empty file, a word
            containing whitespace (a whitespace tokenizer could never produce it), a value that
            is not a number or not a finite float32 (NaN, inf, 1e400), a line with a different
            number of values than the first, a word listed twice, or a header that does not
            match the vectors.
    """
    with open(path, "rb") as f:
        text = _decode(path, f.read())
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    header = None
    if lines and _is_header(lines[0][1]):
        header = [int(p) for p in lines[0][1].split()]  # word2vec: "<count> <dim>"
        lines = lines[1:]
    if not lines:
        raise hk.FormatError(f"Embedding file {path!r} holds no vectors.")
    words: list[str] = []
    fields: list[str] = []
    first_line: dict[str, int] = {}
    dim = -1
    for number, line in lines:
        word, values = _parse_line(path, number, line)
        if dim < 0:
            dim = len(values)
            if dim == 0:
                raise hk.FormatError(f"Embedding file {path!r}: line {number} (word {word!r}) has no values.")
        if len(values) != dim:
            raise hk.FormatError(
                f"Embedding file {path!r}: line {number}: the line for word {word!r} has {len(values)} values; "
                f"expected {dim}."
            )
        if word in first_line:
            raise hk.FormatError(
                f"Embedding file {path!r}: line {number} lists the word {word!r} again (first on line "
                f"{first_line[word]})."
            )
        first_line[word] = number
        words.append(word)
        fields.extend(values)
    if header is not None and header != [len(words), dim]:
        raise hk.FormatError(
            f"Embedding file {path!r}: the header promises {header[0]} vectors of {header[1]} values, but the file "
            f"holds {len(words)} of {dim}."
        )
    values = _to_float32(path, fields, lines, dim)
    return words, values.reshape(len(words), dim)


def _to_float32(path: str, fields: list[str], lines: list[tuple[int, str]], dim: int) -> np.ndarray:
    """The fields as finite float32 numbers; FormatError naming the line of the first bad one."""
    bad = None
    with np.errstate(over="ignore"):
        try:
            values = np.array(fields, dtype=np.float64).astype(np.float32)
        except ValueError:
            values = None
            for k, field in enumerate(fields):
                try:
                    float(field)
                except ValueError:
                    bad = k
                    break
    if values is not None:
        finite = np.isfinite(values)
        if finite.all():
            return values
        bad = int(np.argmin(finite))
    number, line = lines[bad // dim]
    word = line.partition(" ")[0]
    what = "is not a number" if values is None else "is not a finite float32 (NaN, infinite or too large)"
    raise hk.FormatError(f"Embedding file {path!r}: line {number}: value {fields[bad]!r} of word {word!r} {what}.")


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
    return run_cli(
        lambda: export(args.embedding_file, args.export_path, args.num_oov_buckets, args.preprocess),
        f"exported {args.export_path}",
    )


if __name__ == "__main__":
    sys.exit(main())
