"""hubkit.text: string ops, whitespace tokenization and vocabulary tables.

Tokens are kept as :class:`RaggedTensor` (flat values plus the row of each value), the form
``hubkit.nn.embedding_lookup_sparse`` consumes. Out-of-vocabulary tokens are hashed with
:func:`fingerprint64` (FNV-1a 64 of the UTF-8 bytes), so ids are the same in every process.
"""

from hubkit.ops._vocab import fingerprint64
from hubkit.ops.sparse import RaggedTensor
from hubkit.text.strings import lower, regex_replace, whitespace_tokenize
from hubkit.text.vocabulary import VocabularyTable, vocabulary_table

__all__ = [
    "RaggedTensor",
    "VocabularyTable",
    "fingerprint64",
    "lower",
    "regex_replace",
    "vocabulary_table",
    "whitespace_tokenize",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = []
