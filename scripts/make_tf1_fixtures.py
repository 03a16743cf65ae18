"""Builds the TF1 Hub modules of tests/data/tf1/ with real TensorFlow and records TF's outputs.

Dev-only: run it with a separate virtualenv holding TensorFlow (never a dependency of hubkit or its tests)::

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 tensorflow-hub==0.15.0
    /work/tfvenv/bin/python scripts/make_tf1_fixtures.py [OUT_DIR]

tensorflow_hub 0.15 imports ``tensorflow.compat.v1.estimator``, which TF 2.21 removed: a stub module with an
``Exporter`` class is registered under that name first. Each fixture is a module directory
``<name>/`` plus ``<name>.npz`` holding the inputs fed and TF's outputs (plain arrays, no pickles).
"""

from __future__ import annotations

import os
import shutil
import sys
import types

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

_stub = types.ModuleType("tensorflow.compat.v1.estimator")


class _Exporter:  # what tensorflow_hub.estimator subclasses; never used here
    pass


_stub.Exporter = _Exporter  # type: ignore[attr-defined]
sys.modules["tensorflow.compat.v1.estimator"] = _stub
tf.compat.v1.estimator = _stub  # type: ignore[attr-defined]

import tensorflow_hub as hub  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_v2_behavior()
tf1.enable_resource_variables()

OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                                          "data", "tf1"))
RNG = np.random.default_rng(1234)


def _export(name: str, spec, feeds: dict, tags_list=(None,), setup=None, extra=None) -> None:
    """Instantiates ``spec``, sets variables (``setup(sess, module)``), exports, records outputs per variant."""
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    record: dict[str, np.ndarray] = {}
    with tf.Graph().as_default():
        tf1.set_random_seed(7)
        module = hub.Module(spec, trainable=True)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(tf1.tables_initializer())
            if setup is not None:
                setup(sess, module)
            module.export(path, sess)
    for tags in tags_list:
        prefix = "train__" if tags else ""
        with tf.Graph().as_default():
            m = hub.Module(path, tags=tags, trainable=True)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                sess.run(tf1.tables_initializer())
                for sig, inputs in feeds.items():
                    placeholders = {k: tf1.placeholder(tf.as_dtype(v.dtype) if v.dtype.kind != "U" else tf.string,
                                                       v.shape) for k, v in inputs.items()}
                    outs = m(placeholders, signature=sig, as_dict=True)
                    fd = {placeholders[k]: v for k, v in inputs.items()}
                    values = sess.run(outs, fd)
                    for k, v in inputs.items():
                        record[f"{prefix}in__{sig}__{k}"] = v
                    for k, v in values.items():
                        record[f"{prefix}out__{sig}__{k}"] = np.asarray(v)
                    if extra is not None:
                        extra(sess, m, placeholders, fd, outs, record, prefix)
    np.savez(os.path.join(OUT, name + ".npz"), **{k: _plain(v) for k, v in record.items()})
    print("wrote", name, sorted(record))


def _plain(value) -> np.ndarray:
    """Strings as fixed-width bytes: an object array would need a pickle, which tests never load."""
    arr = np.asarray(value)
    if arr.dtype.kind in "OU":
        return np.array([x.encode() if isinstance(x, str) else bytes(x) for x in arr.reshape(-1)],
                        dtype=object).astype(bytes).reshape(arr.shape)
    return arr


def _grad_record(sess, m, placeholders, fd, outs, record, prefix):
    """TF's gradient of sum(default output * w) with respect to every trainable variable."""
    out = outs.get("default")
    if out is None or not out.dtype.is_floating:
        return
    w = tf1.constant(np.linspace(-1.0, 1.0, int(np.prod(sess.run(tf.shape(out), fd)))).astype(np.float32))
    loss = tf.reduce_sum(tf.reshape(out, [-1]) * w)
    variables = m.variables
    grads = tf.gradients(loss, variables)
    for v, g in zip(variables, grads):
        if g is None:
            continue
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        record[f"{prefix}grad__{v.op.name.split('/', 1)[1]}"] = sess.run(g, fd)


# -- fixtures -----------------------------------------------------------------------------------------
def two_signatures() -> None:
    def module_fn():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("dense/kernel", [3, 4], initializer=tf1.random_normal_initializer(seed=1))
        b = tf1.get_variable("dense/bias", [4], initializer=tf1.random_normal_initializer(seed=2))
        h = tf.nn.relu(tf.matmul(x, w) + b)
        tf1.add_to_collection(tf1.GraphKeys.REGULARIZATION_LOSSES, 0.01 * tf.reduce_sum(tf.square(w)))
        hub.add_signature("default", {"x": x}, {"default": h, "layer/logits": tf.matmul(x, w)})
        a = tf1.placeholder(tf.float32, [None], name="a")
        c = tf1.placeholder(tf.float32, [None], name="c")
        hub.add_signature("combine_scaled", {"a": a, "c": c}, {"sum": a + c * 2.0, "prod": tf.sigmoid(a * c)})

    spec = hub.create_module_spec(module_fn)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    a = RNG.standard_normal(4).astype(np.float32)
    c = RNG.standard_normal(4).astype(np.float32)
    _export("two_signatures", spec, {"default": {"x": x}, "combine_scaled": {"a": a, "c": c}}, extra=None)


VOCAB = ["<unk>", "the", "cat", "sat", "on", "mat", "dog", "caf\u00e9", "naïve", "hello", "world", "a\rb"]


def text_embedding() -> None:
    """Like tensorflow_hub's examples/text_embeddings/export.py: regex normalisation, vocab, OOV buckets, sqrtn."""
    vocab_path = os.path.join(OUT, "_vocab.txt")
    with open(vocab_path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(VOCAB[:-1]) + "\r\n" + VOCAB[-1])  # a \r before one line end, none at the end of file
    num_oov, dim = 3, 5
    vocab_size = len(VOCAB)

    def module_fn():
        sentences = tf1.placeholder(tf.string, [None], name="sentences")
        normalized = tf.strings.regex_replace(sentences, r"\pP", "")
        normalized = tf.strings.lower(normalized)
        tokens = tf1.string_split(normalized, " \t")
        emb = tf1.get_variable("embeddings", [vocab_size + num_oov, dim],
                               initializer=tf1.random_normal_initializer(seed=3))
        table = tf1.lookup.StaticVocabularyTable(
            tf1.lookup.TextFileInitializer(vocab_path, tf.string, tf1.lookup.TextFileIndex.WHOLE_LINE,
                                           tf.int64, tf1.lookup.TextFileIndex.LINE_NUMBER),
            num_oov_buckets=num_oov) if False else None
        from tensorflow.python.ops import lookup_ops
        table = lookup_ops.index_table_from_file(vocabulary_file=vocab_path, num_oov_buckets=num_oov)
        ids = tf.SparseTensor(tokens.indices, table.lookup(tokens.values), tokens.dense_shape)
        ids, _ = tf1.sparse_fill_empty_rows(ids, table.lookup(tf.constant("")))
        ids = tf1.sparse_reset_shape(ids)
        combined = tf1.nn.embedding_lookup_sparse(params=emb, sp_ids=ids, sp_weights=None, combiner="sqrtn")
        hub.add_signature("default", {"sentences": sentences}, {"default": combined})

    spec = hub.create_module_spec(module_fn)
    sentences = np.array(["the cat sat on the mat.", "", "Hello, WORLD!", "unknown words here", "caf\u00e9 naïve\tdog",
                          "a\rb cat", "  ", "zebra"], dtype=object)
    _export("text_embedding", spec, {"default": {"sentences": sentences}}, extra=_grad_record)
    os.remove(vocab_path)


def partitioned_embedding() -> None:
    def module_fn():
        ids = tf1.placeholder(tf.int64, [None], name="ids")
        emb = tf1.get_variable("emb", [10, 3], partitioner=tf1.fixed_size_partitioner(3),
                               initializer=tf1.random_normal_initializer(seed=4))
        out = tf.nn.embedding_lookup(emb, ids, partition_strategy="mod") if False else tf1.nn.embedding_lookup(
            emb, ids, partition_strategy="div")
        hub.add_signature("default", {"ids": ids}, {"default": out})

    spec = hub.create_module_spec(module_fn)
    _export("partitioned_embedding", spec, {"default": {"ids": np.array([0, 3, 9, 4, 4, 7], np.int64)}},
            extra=_grad_record)


def _cnn_fn(training: bool):
    def module_fn():
        images = tf1.placeholder(tf.float32, [None, 10, 10, 3], name="images")
        x = tf1.layers.conv2d(images, 4, 3, padding="same", use_bias=False, name="conv1")
        x = tf1.layers.batch_normalization(x, training=training, fused=True, name="bn1", momentum=0.9)
        x = tf.nn.relu(x)
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf1.layers.conv2d(x, 6, 3, strides=2, padding="valid", name="conv2")
        x = tf1.layers.batch_normalization(x, training=training, fused=False, name="bn2")
        x = tf.nn.relu(x)
        x = tf.reduce_mean(x, axis=[1, 2])
        hub.add_signature("default", {"images": images}, {"default": x})

    return module_fn


def _set_bn_stats(sess, module):
    for v in module.variables:
        name = v.op.name
        if "moving_mean" in name:
            v.load(RNG.standard_normal(v.shape).astype(np.float32) * 0.3, sess)
        elif "moving_variance" in name:
            v.load(RNG.uniform(0.5, 2.0, v.shape).astype(np.float32), sess)
        elif "gamma" in name or "beta" in name:
            v.load(RNG.uniform(0.5, 1.5, v.shape).astype(np.float32), sess)


def _bn_updates(sess, m, placeholders, fd, outs, record, prefix):
    if not prefix:
        return _grad_record(sess, m, placeholders, fd, outs, record, prefix)
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    sess.run(updates, fd)
    for v in m.variables:
        if "moving" in v.op.name:
            record[f"{prefix}after__{v.op.name.split('/', 1)[1]}"] = sess.run(v)


def cnn_batch_norm() -> None:
    spec = hub.create_module_spec(lambda: _cnn_fn(False)(), tags_and_args=[
        (set(), {}), ({"train"}, {})]) if False else None
    spec = hub.create_module_spec(_cnn_module_fn, tags_and_args=[(set(), {"training": False}),
                                                                 ({"train"}, {"training": True})])
    images = RNG.standard_normal((4, 10, 10, 3)).astype(np.float32)
    _export("cnn_batch_norm", spec, {"default": {"images": images}}, tags_list=(None, {"train"}),
            setup=_set_bn_stats, extra=_bn_updates)


def _cnn_module_fn(training):
    _cnn_fn(training)()


def mobilenet_block() -> None:
    def module_fn():
        images = tf1.placeholder(tf.float32, [None, 9, 9, 3], name="images")
        x = tf1.layers.conv2d(images, 8, 3, strides=2, padding="same", use_bias=False, name="MobilenetV2/Conv")
        x = tf1.layers.batch_normalization(x, training=False, fused=True, name="MobilenetV2/Conv/BatchNorm")
        x = tf.nn.relu6(x)
        dw = tf1.get_variable("MobilenetV2/expanded_conv/depthwise/depthwise_weights", [3, 3, 8, 2],
                              initializer=tf1.random_normal_initializer(seed=5))
        y = tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME")
        y = tf.nn.relu6(y)
        y = tf1.layers.conv2d(y, 6, 1, name="MobilenetV2/expanded_conv/project")
        pooled = tf.nn.avg_pool2d(y, 2, 1, "VALID")
        features = tf.reduce_mean(pooled, axis=[1, 2])
        hub.attach_image_module_info(hub.ImageModuleInfo(default_image_size=hub.ImageModuleInfo.InputSize(height=9,
                                                                                                      width=9)))
        hub.add_signature("image_feature_vector", {"images": images},
                          {"default": features, "MobilenetV2/layer_7/output": y})
        hub.add_signature("default", {"images": images}, {"default": features})

    spec = hub.create_module_spec(module_fn)
    images = RNG.uniform(0, 1, (2, 9, 9, 3)).astype(np.float32)
    _export("mobilenet_block", spec, {"default": {"images": images}, "image_feature_vector": {"images": images}},
            setup=_set_bn_stats, extra=_grad_record)


def _layer_norm(x, name):
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [x.shape[-1]], initializer=tf1.ones_initializer())
        beta = tf1.get_variable("beta", [x.shape[-1]], initializer=tf1.zeros_initializer())
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-12) * gamma + beta


def bert_encoder() -> None:
    vocab, hidden, heads, seq = 30, 8, 2, 5

    def gelu(x):
        return x * 0.5 * (1.0 + tf.math.erf(x / np.sqrt(2.0).astype(np.float32)))

    def module_fn():
        ids = tf1.placeholder(tf.int32, [None, None], name="input_ids")
        mask = tf1.placeholder(tf.int32, [None, None], name="input_mask")
        init = tf1.truncated_normal_initializer(stddev=0.5, seed=6)
        table = tf1.get_variable("bert/embeddings/word_embeddings", [vocab, hidden], initializer=init)
        pos = tf1.get_variable("bert/embeddings/position_embeddings", [seq, hidden], initializer=init)
        batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
        x = tf.gather(table, ids) + tf.expand_dims(tf.slice(pos, [0, 0], [length, -1]), 0)
        x = _layer_norm(x, "bert/embeddings/LayerNorm")
        q = tf1.layers.dense(x, hidden, name="bert/encoder/layer_0/attention/self/query", kernel_initializer=init)
        k = tf1.layers.dense(x, hidden, name="bert/encoder/layer_0/attention/self/key", kernel_initializer=init)
        v = tf1.layers.dense(x, hidden, name="bert/encoder/layer_0/attention/self/value", kernel_initializer=init)

        def split(t):
            return tf.transpose(tf.reshape(t, [batch, length, heads, hidden // heads]), [0, 2, 1, 3])

        scores = tf.matmul(split(q), split(k), transpose_b=True) / np.sqrt(hidden // heads).astype(np.float32)
        adder = (1.0 - tf.cast(mask[:, tf.newaxis, tf.newaxis, :], tf.float32)) * -10000.0
        probs = tf.nn.softmax(scores + adder)
        ctx = tf.reshape(tf.transpose(tf.matmul(probs, split(v)), [0, 2, 1, 3]), [batch, length, hidden])
        x = _layer_norm(ctx + x, "bert/encoder/layer_0/attention/output/LayerNorm")
        inter = gelu(tf1.layers.dense(x, 16, name="bert/encoder/layer_0/intermediate/dense", kernel_initializer=init))
        x = _layer_norm(tf1.layers.dense(inter, hidden, name="bert/encoder/layer_0/output/dense",
                                         kernel_initializer=init) + x, "bert/encoder/layer_0/output/LayerNorm")
        pooled = tf.tanh(tf1.layers.dense(x[:, 0, :], hidden, name="bert/pooler/dense", kernel_initializer=init))
        hub.add_signature("tokens", {"input_ids": ids, "input_mask": mask},
                          {"pooled_output": pooled, "sequence_output": x, "default": pooled})

    spec = hub.create_module_spec(module_fn)
    ids = RNG.integers(0, vocab, (3, seq)).astype(np.int32)
    mask = np.ones((3, seq), np.int32)
    mask[1, 3:] = 0
    _export("bert_encoder", spec, {"tokens": {"input_ids": ids, "input_mask": mask}}, extra=_grad_record)


def ref_variables() -> None:
    def module_fn():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", [2, 2], initializer=tf1.random_normal_initializer(seed=8), use_resource=False)
        b = tf1.Variable([0.5, -0.5], name="b", use_resource=False)
        words = tf1.Variable(["alpha", "beta"], name="words", use_resource=False, trainable=False)
        hub.add_signature("default", {"x": x}, {"default": tf.matmul(x, w) + b, "words": tf.identity(words)})

    spec = hub.create_module_spec(module_fn)
    _export("ref_variables", spec, {"default": {"x": RNG.standard_normal((3, 2)).astype(np.float32)}},
            extra=_grad_record)


def ops_zoo() -> None:
    """Ops the other fixtures do not reach: padding modes, EXPLICIT/dilated convolution, SAME pools, splits,
    Select (V1), integer division of negatives, strings split with StringSplitV2 and a computed RE2 pattern."""

    def module_fn():
        x = tf1.placeholder(tf.float32, [None, 7, 6, 2], name="x")
        padded = tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]])
        reflected = tf.pad(x, [[0, 0], [2, 1], [1, 2], [0, 0]], mode="REFLECT")
        symmetric = tf.pad(x, [[0, 0], [1, 0], [2, 2], [0, 0]], mode="SYMMETRIC")
        w = tf1.get_variable("w", [3, 2, 2, 4], initializer=tf1.random_normal_initializer(seed=9))
        conv = tf.nn.conv2d(padded, w, strides=[1, 2, 1, 1], padding=[[0, 0], [1, 2], [2, 1], [0, 0]],
                            dilations=[1, 1, 1, 1])  # TF's CPU Conv2D kernel refuses dilations
        pooled = tf.nn.max_pool2d(reflected, [1, 3, 2, 1], [1, 2, 2, 1], "SAME")
        averaged = tf.nn.avg_pool2d(symmetric, [1, 2, 3, 1], [1, 2, 2, 1], "SAME")
        a, b = tf.split(conv, 2, axis=3)
        c, d, e = tf.split(pooled, [1, -1, 2], axis=2)
        rows = tf.unstack(averaged, axis=1)
        picked = tf1.where(tf.reduce_sum(x, axis=[1, 2, 3]) > 0.0, tf.reduce_mean(a, axis=[1, 2]),
                           tf.reduce_max(b, axis=[1, 2]))
        tiled = tf.tile(tf.reduce_sum(c, axis=[1, 2]), [1, 3])
        hot = tf.one_hot(tf.argmax(tf.reduce_mean(e, axis=[1, 2]), axis=1), 3, on_value=2.0, off_value=-1.0)
        flat = tf.reshape(x, [-1, 7 * 6 * 2])
        summary = tf.concat([picked, tiled, hot, tf.math.reciprocal(tf.abs(flat[:, :3]) + 1.0), rows[0][:, 0, :],
                             tf.reduce_mean(d, axis=[1, 2])], axis=1)
        hub.add_signature("default", {"x": x}, {"default": summary, "conv": conv, "pooled": pooled,
                                                "averaged": averaged})
        n = tf1.placeholder(tf.int32, [None], name="n")
        m = tf1.placeholder(tf.int32, [None], name="m")
        hub.add_signature("integers", {"n": n, "m": m}, {
            "floordiv": tf.math.floordiv(n, m), "floormod": tf.math.floormod(n, m),
            "range": tf.range(tf.reduce_min(m), tf.reduce_max(n), 2), "filled": tf.fill(tf.shape(n), 7)})
        text = tf1.placeholder(tf.string, [None], name="text")
        pattern = tf.strings.join(["[", tf.constant("aeiou"), "]+"])
        replaced = tf.strings.regex_replace(text, pattern, "_")
        split = tf1.strings.split(
            replaced, maxsplit=2, result_type="SparseTensor")
        hub.add_signature("strings", {"text": text}, {"values": split.values, "indices": split.indices,
                                                      "replaced": replaced})

    spec = hub.create_module_spec(module_fn)
    x = RNG.standard_normal((3, 7, 6, 2)).astype(np.float32)
    x[1] = -np.abs(x[1])
    feeds = {"default": {"x": x},
             "integers": {"n": np.array([7, -7, 7, -7, 0], np.int32), "m": np.array([2, 2, -2, -2, 3], np.int32)},
             "strings": {"text": np.array(["  hello  wide\tworld ", "", "aeiou x y z", "caf\u00e9 au lait"],
                                          dtype=object)}}
    _export("ops_zoo", spec, feeds, extra=_grad_record)


def _export_sparse(name: str, spec, calls: list, extra=None) -> None:
    """As :func:`_export` for signatures with sparse inputs: ``calls`` holds (signature, {key: array or
    (indices, values, dense_shape)}); a sparse value is fed to a ``sparse_placeholder`` and recorded as
    ``in__<sig>__<key>__indices`` / ``__values`` / ``__dense_shape`` (sparse outputs likewise)."""
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    with tf.Graph().as_default():
        tf1.set_random_seed(7)
        module = hub.Module(spec, trainable=True)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            module.export(path, sess)
    record: dict[str, np.ndarray] = {}
    with tf.Graph().as_default():
        m = hub.Module(path, trainable=True)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for n, (sig, inputs) in enumerate(calls):
                tag = f"call{n}"
                placeholders, fd = {}, {}
                for k, v in inputs.items():
                    if isinstance(v, tuple):
                        ph = tf1.sparse_placeholder(tf.as_dtype(v[1].dtype), [None] * len(v[2]))
                        fd[ph] = tf1.SparseTensorValue(*v)
                        for part, arr in zip(("indices", "values", "dense_shape"), v):
                            record[f"{tag}__in__{sig}__{k}__{part}"] = arr
                    else:
                        ph = tf1.placeholder(tf.as_dtype(v.dtype), v.shape)
                        fd[ph] = v
                        record[f"{tag}__in__{sig}__{k}"] = v
                    placeholders[k] = ph
                outs = m(placeholders, signature=sig, as_dict=True)
                for k, v in sess.run(outs, fd).items():
                    if isinstance(v, tf1.SparseTensorValue):
                        for part in ("indices", "values", "dense_shape"):
                            record[f"{tag}__out__{sig}__{k}__{part}"] = np.asarray(getattr(v, part))
                    else:
                        record[f"{tag}__out__{sig}__{k}"] = np.asarray(v)
                if extra is not None and n == 0:
                    extra(sess, m, placeholders, fd, outs, record, "")
    np.savez(os.path.join(OUT, name + ".npz"), **{k: _plain(v) for k, v in record.items()})
    print("wrote", name, sorted(record))


def sparse_signature() -> None:
    """A classic sparse-input module: ids from ``sparse_placeholder`` -> embedding_lookup_sparse; a sparse output."""

    def module_fn():
        ids = tf1.sparse_placeholder(tf.int64, [None, None], name="ids")
        weights = tf1.sparse_placeholder(tf.float32, [None, None], name="weights")
        emb = tf1.get_variable("embeddings", [8, 4], initializer=tf1.random_normal_initializer(seed=11))
        pooled = tf1.nn.embedding_lookup_sparse(emb, ids, None, combiner="sqrtn")
        weighted = tf1.nn.embedding_lookup_sparse(emb, ids, weights, combiner="sum")
        doubled = tf.SparseTensor(ids.indices, ids.values * 2, ids.dense_shape)
        hub.add_signature("default", {"ids": ids}, {"default": pooled, "doubled": doubled})
        hub.add_signature("weighted", {"ids": ids, "weights": weights}, {"default": weighted})

    spec = hub.create_module_spec(module_fn)
    indices = np.array([[0, 0], [0, 1], [2, 0], [2, 3], [3, 1]], np.int64)
    ids = (indices, np.array([1, 7, 0, 3, 3], np.int64), np.array([4, 5], np.int64))
    weights = (indices, RNG.uniform(0.5, 2.0, 5).astype(np.float32), np.array([4, 5], np.int64))
    _export_sparse("sparse_signature", spec, [("default", {"ids": ids}), ("weighted", {"ids": ids, "weights": weights})],
                   extra=_grad_record)


def _control_flow_graph():
    """The control_flow fixture's graph: (inputs, outputs) as dicts of tensors."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    n = tf1.placeholder(tf.int32, [], name="n")
    flag = tf1.placeholder(tf.bool, [], name="flag")
    w = tf1.get_variable("rnn/w", [3, 3], initializer=tf1.random_normal_initializer(seed=12))
    u = tf1.get_variable("rnn/u", [3], initializer=tf1.random_normal_initializer(seed=13))

    def body(i, h):
        return i + 1, tf.tanh(tf.matmul(h, w) + x * u)

    _, h = tf1.while_loop(lambda i, h: i < n, body, [tf.constant(0), tf.zeros_like(x)], name="rnn_loop")
    chosen = tf1.cond(flag, lambda: h * 2.0 + u, lambda: tf.reduce_sum(x) - h, name="choose")

    def outer_body(i, acc):
        def inner_body(j, a):
            step = tf1.cond(tf.equal(j % 2, 0), lambda: a + tf.cast(j, tf.float32) * u, lambda: a * 0.9)
            return j + 1, step

        _, acc2 = tf1.while_loop(lambda j, a: j < i, inner_body, [tf.constant(0), acc], name="inner")
        return i + 1, tf.tanh(acc2)

    _, nested = tf1.while_loop(lambda i, a: i < n, outer_body, [tf.constant(0), tf.reduce_mean(x, 0)],
                               name="outer")
    bounded = tf1.while_loop(lambda v: tf.reduce_sum(v) < 1e6, lambda v: v * 2.0 + 1.0, [x],
                             maximum_iterations=n + 1, name="bounded")
    pair_a, pair_b = tf1.cond(flag, lambda: (h + 1.0, tf.reduce_sum(h)), lambda: (h * h, tf.constant(3.0)),
                              name="pair")  # two outputs: one If; a branch of constants only
    nested_cond = tf1.cond(flag, lambda: tf1.cond(n > 2, lambda: x * 2.0, lambda: x + u), lambda: -x,
                           name="outer_cond")
    return {"x": x, "n": n, "flag": flag}, {"default": chosen, "rnn": h, "nested": nested, "bounded": bounded,
                                            "pair_a": pair_a, "pair_b": pair_b, "nested_cond": nested_cond}


def _native_grads(path: str, build, feeds: dict) -> dict[str, np.ndarray]:
    """TF's gradients of sum(default * linspace(-1, 1)) on the graph built directly with the module's variable
    values: TF cannot differentiate control flow v2 re-imported from a module unless it was exported with every
    intermediate (``output_all_intermediates``, which adds TensorList accumulators a served module never has)."""
    reader = tf1.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    tf1.experimental.output_all_intermediates(True)
    with tf.Graph().as_default():
        inputs, outputs = build()
        variables = tf1.global_variables()
        with tf1.Session() as sess:
            for v in variables:
                v.load(reader.get_tensor(v.op.name), sess)
            fd = {inputs[k]: v for k, v in feeds.items()}
            out = outputs["default"]
            w = tf1.constant(np.linspace(-1.0, 1.0, int(np.prod(sess.run(tf.shape(out), fd)))).astype(np.float32))
            loss = tf.reduce_sum(tf.reshape(out, [-1]) * w)
            grads = sess.run(tf.gradients(loss, variables), fd)
    tf1.experimental.output_all_intermediates(None)
    return {f"grad__{v.op.name}": g for v, g in zip(variables, grads)}


def control_flow(name: str = "control_flow") -> None:
    """TF1 control flow v1 (Enter/Merge/Switch/LoopCond/NextIteration/Exit): an RNN-like while_loop over a
    dynamic length, a cond on a placeholder, a loop nested in a loop with a cond inside, and ``maximum_iterations``.
    As ``control_flow_v2``, the same module with control flow v2 (While/StatelessIf calling library functions)."""
    v2 = name == "control_flow_v2"
    if v2:
        tf1.enable_control_flow_v2()
    else:
        tf1.disable_control_flow_v2()

    def module_fn():
        inputs, outputs = _control_flow_graph()
        hub.add_signature("default", inputs, outputs)

    spec = hub.create_module_spec(module_fn)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    calls = [("default", {"x": x, "n": np.array(4, np.int32), "flag": np.array(True)}),
             ("default", {"x": x, "n": np.array(0, np.int32), "flag": np.array(False)}),
             ("default", {"x": x[:1], "n": np.array(3, np.int32), "flag": np.array(False)})]
    _export_sparse(name, spec, calls, extra=None if v2 else _grad_record)
    if v2:
        path = os.path.join(OUT, name)
        with np.load(path + ".npz") as data:
            record = {k: data[k] for k in data.files}
        record.update(_native_grads(path, _control_flow_graph, calls[0][1]))
        np.savez(path + ".npz", **record)
    tf1.disable_control_flow_v2()


def control_flow_v2() -> None:
    control_flow("control_flow_v2")


def control_flow_v2_intermediates() -> None:
    """Control flow v2 exported under ``output_all_intermediates(True)`` (what a module meant for fine-tuning in
    TF gets): loops carry EmptyTensorList/TensorListPushBack accumulators, branches return Optional intermediates."""
    tf1.enable_control_flow_v2()
    tf1.experimental.output_all_intermediates(True)

    def module_fn():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        n = tf1.placeholder(tf.int32, [], name="n")
        flag = tf1.placeholder(tf.bool, [], name="flag")
        w = tf1.get_variable("w", [3, 3], initializer=tf1.random_normal_initializer(seed=14))
        _, h = tf1.while_loop(lambda i, h: i < n, lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w) + x)),
                              [tf.constant(0), tf.zeros_like(x)], name="loop")
        out = tf1.cond(flag, lambda: tf.sigmoid(h) * 2.0, lambda: h - tf.reduce_sum(w), name="choose")
        hub.add_signature("default", {"x": x, "n": n, "flag": flag}, {"default": out, "rnn": h})

    spec = hub.create_module_spec(module_fn)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    calls = [("default", {"x": x, "n": np.array(3, np.int32), "flag": np.array(True)}),
             ("default", {"x": x, "n": np.array(2, np.int32), "flag": np.array(False)})]
    _export_sparse("control_flow_v2_intermediates", spec, calls, extra=_grad_record)
    tf1.experimental.output_all_intermediates(None)
    tf1.disable_control_flow_v2()


def _rnn_graph():
    """The dynamic_rnn fixture's default signature: (inputs, outputs) as dicts of tensors."""
    x = tf1.placeholder(tf.float32, [None, None, 3], name="x")
    lengths = tf1.placeholder(tf.int32, [None], name="lengths")
    cell = tf1.nn.rnn_cell.BasicLSTMCell(4, name="lstm")
    outputs, state = tf1.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tf.float32)
    return {"x": x, "lengths": lengths}, {"default": state.h, "outputs": outputs, "cell": state.c}


def dynamic_rnn(name: str = "dynamic_rnn") -> None:
    """``tf.nn.dynamic_rnn`` (TensorArrayV3 read/write/scatter/gather inside a v1 while loop, sequence_length), and
    a while loop writing a ``dynamic_size`` TensorArray that is stacked afterwards. As ``dynamic_rnn_v2``, the same
    with control flow v2 (the TensorArrays become TensorList ops inside library functions)."""
    v2 = name == "dynamic_rnn_v2"
    if v2:
        tf1.enable_control_flow_v2()
    else:
        tf1.disable_control_flow_v2()

    def module_fn():
        inputs, outputs = _rnn_graph()
        hub.add_signature("default", inputs, outputs)
        n = tf1.placeholder(tf.int32, [], name="n")
        scale = tf1.get_variable("scale", [], initializer=tf1.constant_initializer(1.5))

        def body(i, ta):
            return i + 1, ta.write(i, tf.cast(i * i, tf.float32) * scale)

        _, ta = tf1.while_loop(lambda i, ta: i < n, body,
                               [tf.constant(0), tf.TensorArray(tf.float32, size=0, dynamic_size=True)])
        hub.add_signature("squares", {"n": n}, {"default": ta.stack(), "size": ta.size()})

    spec = hub.create_module_spec(module_fn)
    x = RNG.standard_normal((3, 5, 3)).astype(np.float32)
    calls = [("default", {"x": x, "lengths": np.array([5, 2, 4], np.int32)}),
             ("squares", {"n": np.array(4, np.int32)})]
    _export_sparse(name, spec, calls, extra=None if v2 else _grad_record)
    if v2:
        path = os.path.join(OUT, name)
        with np.load(path + ".npz") as data:
            record = {k: data[k] for k in data.files}
        record.update(_native_grads(path, _rnn_graph, calls[0][1]))
        np.savez(path + ".npz", **record)
    tf1.disable_control_flow_v2()


def dynamic_rnn_v2() -> None:
    dynamic_rnn("dynamic_rnn_v2")


FIXTURES = {f.__name__: f for f in (ops_zoo, two_signatures, text_embedding, partitioned_embedding, cnn_batch_norm,
                                    mobilenet_block, bert_encoder, ref_variables,
                                    sparse_signature, control_flow, control_flow_v2,
                                    control_flow_v2_intermediates, dynamic_rnn, dynamic_rnn_v2)}


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    names = sys.argv[2:] or sorted(FIXTURES)
    for name in names:
        FIXTURES[name]()


if __name__ == "__main__":
    main()
