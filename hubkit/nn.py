"""``hubkit.nn``: neural-network functions, as ``tf.nn``.

Activations, softmax, dropout, convolution and pooling, normalisation, embeddings and the fused
cross-entropies. Everything here is a graph function; the ops behind it live in
:mod:`hubkit.ops.nn` and :mod:`hubkit.ops.conv`.
"""

from hubkit.ops.conv import avg_pool, avg_pool2d, conv2d, conv2d_transpose, max_pool, max_pool2d
from hubkit.ops.elementwise import sigmoid, softplus, tanh
from hubkit.ops.nn import (
    batch_normalization,
    bias_add,
    dropout,
    elu,
    embedding_lookup,
    gelu,
    l2_normalize,
    layer_norm,
    leaky_relu,
    log_softmax,
    moments,
    relu,
    relu6,
    sigmoid_cross_entropy_with_logits,
    softmax,
    softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
)
from hubkit.ops.sparse import embedding_lookup_sparse

__all__ = [
    "avg_pool",
    "avg_pool2d",
    "batch_normalization",
    "bias_add",
    "conv2d",
    "conv2d_transpose",
    "dropout",
    "elu",
    "embedding_lookup",
    "embedding_lookup_sparse",
    "gelu",
    "l2_normalize",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "max_pool",
    "max_pool2d",
    "moments",
    "relu",
    "relu6",
    "sigmoid",
    "sigmoid_cross_entropy_with_logits",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "softplus",
    "sparse_softmax_cross_entropy_with_logits",
    "tanh",
]
