"""Optimizers: single steps against NumPy, slot variables, sparse row updates, and training an MLP."""

import numpy as np
import pytest

import hubkit as hk

RNG = np.random.default_rng(0)


class NumpyOptimizer:
    """Reference update rules, written independently of hubkit (TensorFlow 1 formulas)."""

    def __init__(self, kind, lr, **hp):
        self.kind, self.lr, self.hp = kind, lr, hp
        self.state = {}
        self.b1p, self.b2p = hp.get("beta1", 0.9), hp.get("beta2", 0.999)

    def _slots(self, i, p):
        if i not in self.state:
            first = {"adagrad": 0.1, "rmsprop": 1.0}.get(self.kind, 0.0)
            self.state[i] = [np.full_like(p, first), np.zeros_like(p)]
        return self.state[i]

    def step(self, params, grads, rows=None):
        """Updates ``params`` in place; with ``rows``, grads are per-row and only those rows change."""
        for i, (p, g) in enumerate(zip(params, grads)):
            a, b = self._slots(i, p)
            idx = slice(None) if rows is None else rows[i]
            self._rule(p, a, b, g, idx)
        if self.kind == "adam":
            self.b1p *= self.hp["beta1"]
            self.b2p *= self.hp["beta2"]

    def _rule(self, p, a, b, g, idx):
        lr, hp = self.lr, self.hp
        if self.kind == "gd":
            p[idx] -= lr * g
        elif self.kind == "momentum":
            a[idx] = hp["momentum"] * a[idx] + g
            p[idx] -= lr * (g + hp["momentum"] * a[idx]) if hp.get("use_nesterov") else lr * a[idx]
        elif self.kind == "adam":
            lr_t = lr * np.sqrt(1 - self.b2p) / (1 - self.b1p)
            a[idx] = a[idx] + (1 - hp["beta1"]) * (g - a[idx])
            b[idx] = b[idx] + (1 - hp["beta2"]) * (g * g - b[idx])
            p[idx] -= lr_t * a[idx] / (np.sqrt(b[idx]) + hp["epsilon"])
        elif self.kind == "adagrad":
            a[idx] += g * g
            p[idx] -= lr * g / np.sqrt(a[idx])
        elif self.kind == "rmsprop":
            a[idx] = a[idx] + (1 - hp["decay"]) * (g * g - a[idx])
            b[idx] = hp["momentum"] * b[idx] + lr * g / np.sqrt(a[idx] + hp["epsilon"])
            p[idx] -= b[idx]


CASES = {
    "gd": (lambda: hk.train.GradientDescent(0.1), dict(lr=0.1)),
    "momentum": (lambda: hk.train.Momentum(0.05, 0.9), dict(lr=0.05, momentum=0.9)),
    "nesterov": (
        lambda: hk.train.Momentum(0.05, 0.9, use_nesterov=True),
        dict(lr=0.05, momentum=0.9, use_nesterov=True, kind="momentum"),
    ),
    "adam": (lambda: hk.train.Adam(0.01), dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)),
    "adagrad": (lambda: hk.train.Adagrad(0.1), dict(lr=0.1)),
    "rmsprop": (lambda: hk.train.RMSProp(0.01, momentum=0.5), dict(lr=0.01, decay=0.9, momentum=0.5, epsilon=1e-10)),
}


def reference(case):
    hp = dict(CASES[case][1])
    kind = hp.pop("kind", case)
    return NumpyOptimizer(kind, hp.pop("lr"), **hp)


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_match_numpy_exactly(case):
    w0 = RNG.standard_normal((3, 4))
    coef = RNG.standard_normal((3, 4))
    g = hk.Graph()
    with g.as_default():
        w = hk.Variable(w0, name="w", dtype=hk.float64)
        scale = hk.placeholder(hk.float64, [])
        loss = hk.reduce_sum(hk.multiply(hk.multiply(w, hk.constant(coef, hk.float64)), scale))  # d loss / d w = coef * scale
        train_op = CASES[case][0]().minimize(loss)
    sess = hk.Session(g)
    ref, expected = reference(case), w0.copy()
    for s in (1.0, -0.5, 2.0):
        assert sess.run(train_op, {scale: s}) is None
        ref.step([expected], [coef * s])
        np.testing.assert_allclose(w.value, expected, rtol=1e-13, atol=1e-15)


def test_float32_adam_step_stays_float32():
    g = hk.Graph()
    with g.as_default():
        w = hk.Variable(np.ones((2, 2), np.float32), name="w")
        train_op = hk.train.Adam(0.1).minimize(hk.reduce_sum(hk.square(w)))
    buffer = w.value
    hk.Session(g).run(train_op)
    assert w.value.dtype == np.float32 and w.value is buffer  # updated in place
    np.testing.assert_allclose(w.value, 0.9, rtol=1e-6)  # the first Adam step moves by lr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_numba_pass_equals_the_numpy_passes_bit_for_bit(dtype):
    """ApplyAdam's one Numba pass (hubkit/ops/optimizer_ops.adam_kernel) makes NumPy's operations in order."""
    from hubkit.ops import _numba

    rng = np.random.default_rng(3)
    start = (rng.standard_normal((37, 5)) * 3).astype(dtype)
    results = []
    for numba_on in (True, False):
        _numba.set_numba_enabled(numba_on)
        try:
            g = hk.Graph()
            with g.as_default():
                w = hk.Variable(start.copy(), name="w", dtype=dtype)
                x = hk.placeholder(dtype, [None, 37])
                train_op = hk.train.Adam(0.01).minimize(hk.reduce_mean(hk.square(hk.matmul(x, w) - 1.0)))
            sess = hk.Session(g)
            for k in range(4):
                sess.run(train_op, {x: rng.standard_normal((8, 37)).astype(dtype) * (k + 1)})
            results.append(w.value.copy())
        finally:
            _numba.set_numba_enabled(None)
        rng = np.random.default_rng(3)
        rng.standard_normal((37, 5))
    assert not np.array_equal(results[0], start)
    np.testing.assert_array_equal(results[0], results[1])


def test_slot_variable_names_and_lookup():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        loss = hk.reduce_mean(hk.square(hk.layers.dense(x, 2)))
        adam = hk.train.Adam()
        adam.minimize(loss)
        momentum = hk.train.Momentum(0.1, 0.9)
        momentum.minimize(loss)
    kernel = g.variables["dense/kernel"]
    names = [v.name for v in adam.variables()]
    assert names == [
        "dense/kernel/Adam",
        "dense/kernel/Adam_1",
        "dense/bias/Adam",
        "dense/bias/Adam_1",
        "beta1_power",
        "beta2_power",
    ]
    m, v = adam.get_slot(kernel, "m"), adam.get_slot(kernel, "v")
    assert isinstance(m, hk.Variable) and (m.name, v.name) == ("dense/kernel/Adam", "dense/kernel/Adam_1")
    assert not m.trainable and m.shape == kernel.shape and m.dtype is kernel.dtype
    assert adam.get_slot_names() == ["m", "v"]
    assert [s.name for s in momentum.variables()] == ["dense/kernel/Momentum", "dense/bias/Momentum"]
    assert momentum.get_slot(kernel, "momentum").name == "dense/kernel/Momentum"
    assert g.variables["dense/kernel/Adam_1"] is v  # bound in the graph under its name
    assert "dense/kernel/Adam" in [x.name for x in g.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)]
    assert "dense/kernel/Adam" not in [x.name for x in g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)]
    with pytest.raises(hk.GraphError, match=r"Adam has no slot 'momentum'; expected one of \['m', 'v'\]"):
        adam.get_slot(kernel, "momentum")


def test_default_var_list_is_trainable_variables_the_loss_reaches():
    g = hk.Graph()
    with g.as_default():
        a = hk.get_variable("a", [2])
        hk.get_variable("unused", [2])
        frozen = hk.get_variable("frozen", [2], trainable=False)
        loss = hk.reduce_sum(hk.multiply(a, frozen))
        opt = hk.train.GradientDescent(0.1)
        pairs = opt.compute_gradients(loss)
    assert [v.name for _, v in pairs] == ["a"]


def test_errors():
    g = hk.Graph()
    with g.as_default():
        a = hk.get_variable("a", [2])
        b = hk.get_variable("b", [2])
        loss = hk.reduce_sum(a)
        with pytest.raises(hk.GraphError, match=r"No gradient flows to any of the variables \['b'\]"):
            hk.train.GradientDescent(0.1).minimize(loss, var_list=[b])
        with pytest.raises(hk.GraphError, match="depends on no trainable variable"):
            hk.train.Adam().minimize(hk.reduce_sum(hk.constant([1.0])))
    with pytest.raises(hk.GraphError, match="non-negative"):
        hk.train.GradientDescent(-1.0)
    with pytest.raises(hk.GraphError, match=r"beta1 must lie in \[0, 1\)"):
        hk.train.Adam(beta1=1.0)


def test_global_step_and_tensor_learning_rate():
    g = hk.Graph()
    with g.as_default():
        w = hk.Variable([1.0, 2.0], name="w")
        lr = hk.placeholder(hk.float32, [])
        step = hk.train.create_global_step()
        train_op = hk.train.GradientDescent(lr).minimize(hk.reduce_sum(w), global_step=step)
        assert hk.train.get_global_step() is step
        with pytest.raises(hk.GraphError, match="already has a global step"):
            hk.train.create_global_step()
    sess = hk.Session(g)
    sess.run(train_op, {lr: 0.5})
    sess.run(train_op, {lr: 0.25})
    np.testing.assert_allclose(w.value, [0.25, 1.25])
    assert int(step.value) == 2 and step.value.dtype == np.int64


def test_loss_fetched_with_the_step_is_computed_before_the_update():
    g = hk.Graph()
    with g.as_default():
        w = hk.Variable([3.0], name="w")
        loss = hk.reduce_sum(hk.square(w))
        train_op = hk.train.GradientDescent(0.25).minimize(loss)
    before, _ = hk.Session(g).run([loss, train_op])
    assert before == 9.0 and w.value[0] == 1.5


@pytest.mark.parametrize("case", sorted(CASES))
def test_sparse_updates_touch_only_used_rows(case):
    table0 = RNG.standard_normal((8, 3))
    g = hk.Graph()
    with g.as_default():
        table = hk.Variable(table0, name="table", dtype=hk.float64)
        ids = hk.placeholder(hk.int32, [None])
        coef = hk.placeholder(hk.float64, [None, 3])
        loss = hk.reduce_sum(hk.multiply(hk.gather(table, ids), coef))
        opt = CASES[case][0]()
        (grad, _), = opt.compute_gradients(loss)
        assert isinstance(grad, hk.IndexedSlices)
        train_op = opt.apply_gradients([(grad, table)])
    sess = hk.Session(g)
    ref, expected = reference(case), table0.copy()
    for feed_ids in ([1, 3, 1], [3, 5]):  # repeated ids accumulate; row 1 is absent from the second step
        c = RNG.standard_normal((len(feed_ids), 3))
        sess.run(train_op, {ids: feed_ids, coef: c})
        rows, inverse = np.unique(feed_ids, return_inverse=True)
        summed = np.zeros((len(rows), 3))
        np.add.at(summed, inverse, c)
        ref.step([expected], [summed], rows=[rows])
        np.testing.assert_allclose(table.value, expected, rtol=1e-13, atol=1e-15)
    untouched = [0, 2, 4, 6, 7]
    np.testing.assert_array_equal(table.value[untouched], table0[untouched])
    for slot in opt.variables():
        if slot.shape == table.shape:
            initial = {"adagrad": 0.1, "rmsprop": 1.0}.get(case, 0.0) if slot.name.endswith(opt.name) else 0.0
            np.testing.assert_array_equal(slot.value[untouched], initial)


# -- training an MLP: hubkit and a hand-written NumPy implementation reach the same loss ------------
def make_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 4))
    y = np.sin(x @ rng.standard_normal((4, 1))) + 0.1 * x[:, :1] ** 2
    w = [rng.standard_normal((4, 16)) * 0.5, np.zeros(16), rng.standard_normal((16, 1)) * 0.25, np.zeros(1)]
    return x, y, w


def numpy_mlp_losses(case, x, y, weights, steps):
    w = [p.copy() for p in weights]
    opt = reference(case)
    losses = []
    for _ in range(steps):
        z = x @ w[0] + w[1]
        h = np.maximum(z, 0)
        pred = h @ w[2] + w[3]
        diff = pred - y
        losses.append(float(np.mean(diff**2)))
        g = 2 * diff / diff.size
        grads = [None, None, h.T @ g, g.sum(0)]
        gz = (g @ w[2].T) * (z > 0)
        grads[0], grads[1] = x.T @ gz, gz.sum(0)
        opt.step(w, grads)
    return losses


def hubkit_mlp_losses(case, x, y, weights, steps):
    g = hk.Graph()
    with g.as_default():
        xp = hk.placeholder(hk.float64, [None, 4])
        yp = hk.placeholder(hk.float64, [None, 1])
        h = hk.layers.dense(xp, 16, activation="relu")
        pred = hk.layers.dense(h, 1)
        loss = hk.losses.mean_squared_error(yp, pred)
        train_op = CASES[case][0]().minimize(loss)
    for var, value in zip(g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES), weights):
        var.assign(value)
    sess = hk.Session(g)
    return [float(sess.run([loss, train_op], {xp: x, yp: y})[0]) for _ in range(steps)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_mlp_training_reaches_the_numpy_loss(case):
    x, y, weights = make_data()
    steps = 150
    ours = hubkit_mlp_losses(case, x, y, weights, steps)
    theirs = numpy_mlp_losses(case, x, y, weights, steps)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)  # same model, same start
    threshold = 0.35 * theirs[0]
    assert theirs[-1] < threshold, f"the NumPy reference itself did not train ({theirs[-1]} >= {threshold})"
    assert ours[-1] < threshold
    assert ours[-1] == pytest.approx(theirs[-1], rel=1e-6)


def test_non_trainable_variables_are_refused_in_var_list_and_grads_and_vars():
    g = hk.Graph()
    with g.as_default():
        a = hk.get_variable("a", [2])
        zeta = hk.get_variable("zeta", [2], trainable=False)
        beta = hk.get_variable("beta", [2], trainable=False)
        loss = hk.reduce_sum(a * zeta * beta)
        opt = hk.train.GradientDescent(0.1)
        with pytest.raises(hk.GraphError, match=r"var_list holds non-trainable variables \['beta', 'zeta'\]"):
            opt.minimize(loss, var_list=[a, zeta, beta])
        with pytest.raises(hk.GraphError, match=r"grads_and_vars holds non-trainable variables \['zeta'\]"):
            opt.apply_gradients(zip(hk.gradients(loss, [a, zeta]), [a, zeta]))
        before = zeta.value.copy()
        hk.Session(g).run(opt.minimize(loss, var_list=[a]))
    np.testing.assert_array_equal(zeta.value, before)


def test_a_frozen_module_cannot_be_trained_through_an_explicit_var_list():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, name="dense"))

    module = hk.Module(hk.create_module_spec(module_fn), trainable=False)
    with hk.Graph().as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        loss = hk.reduce_sum(hk.square(module(x)))
        with pytest.raises(hk.GraphError, match=r"non-trainable variables \['module/dense/bias', 'module/dense/kernel'\]"):
            hk.train.Adam(0.1).minimize(loss, var_list=module.variables)
