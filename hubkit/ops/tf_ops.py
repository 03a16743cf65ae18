"""Registers the TF-exact op families that TF1 Hub modules are translated onto (see docs/tf1_import.md)."""

from hubkit.ops import tf_array, tf_index, tf_math, tf_nn, tf_sparse, tf_tensor_array, tf_text  # noqa: F401
