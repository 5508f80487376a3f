"""Models: spec parsing, initialisation, numerically checked gradients, stable loss; optimizers."""

from __future__ import annotations

import numpy as np
import pytest

from compute.models import MLP, SoftmaxRegression, accuracy, cross_entropy, parse_model
from compute.optim import SGD, Momentum, make_optimizer


def test_parse_model_specs():
    m = parse_model("mlp:784,1024,1024,10")
    assert isinstance(m, MLP) and m.sizes == [784, 1024, 1024, 10] and m.spec == "mlp:784,1024,1024,10"
    s = parse_model("softmax:784,10")
    assert isinstance(s, SoftmaxRegression) and list(s.init_params()) == ["softmax/w0", "softmax/b0"]


@pytest.mark.parametrize("spec", ["mlp:784", "softmax:1,2,3", "cnn:1,2", "mlp:a,b", "mlp:4,0,2", ""])
def test_parse_model_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="spec|size"):
        parse_model(spec)


def test_parameters_are_named_ordered_and_seeded():
    m = parse_model("mlp:784,1024,1024,10")
    p = m.init_params(seed=3)
    assert list(p) == ["mlp/w0", "mlp/b0", "mlp/w1", "mlp/b1", "mlp/w2", "mlp/b2"]
    assert sum(v.nbytes for v in p.values()) == 4 * (784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10)
    assert all(v.dtype == np.float32 for v in p.values())
    np.testing.assert_array_equal(p["mlp/w1"], m.init_params(seed=3)["mlp/w1"])
    assert not np.array_equal(p["mlp/w1"], m.init_params(seed=4)["mlp/w1"])
    # He initialisation for hidden layers: variance 2 / fan_in.
    assert p["mlp/w1"].std() == pytest.approx(np.sqrt(2 / 1024), rel=0.02)
    # Glorot uniform for the output layer: bounded by sqrt(6 / (fan_in + fan_out)).
    assert np.abs(p["mlp/w2"]).max() <= np.sqrt(6 / 1034)


def _numerical_gradient_check(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float64) for k, v in model.init_params(seed).items()}
    for k in params:  # non-zero biases so their gradients are exercised off the trivial point
        params[k] += rng.standard_normal(params[k].shape) * 0.1
    x = rng.standard_normal((7, model.sizes[0]))
    y = rng.integers(0, model.sizes[-1], 7)
    _, grads = model.loss_and_grads(params, x, y)
    eps = 1e-6
    for name, value in params.items():
        flat = value.reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 12), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = cross_entropy(model.forward(params, x), y)
            flat[i] = old - eps
            down = cross_entropy(model.forward(params, x), y)
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert grads[name].reshape(-1)[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, i)


def test_softmax_regression_gradient_matches_central_differences():
    _numerical_gradient_check(SoftmaxRegression(6, 4), seed=0)


def test_mlp_gradient_matches_central_differences():
    _numerical_gradient_check(MLP([5, 8, 6, 3]), seed=1)


def test_loss_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], np.float32)
    assert cross_entropy(logits, np.array([0, 1])) == pytest.approx(0.0, abs=1e-6)
    assert cross_entropy(logits, np.array([2, 0])) == pytest.approx(2e4, rel=1e-6)  # both rows: lse = 1e4, picked = -1e4
    _, grads = MLP([2, 3]).loss_and_grads({"mlp/w0": np.eye(2, 3, dtype=np.float32) * 1e4,
                                           "mlp/b0": np.zeros(3, np.float32)},
                                          np.ones((1, 2), np.float32), np.array([2]))
    assert all(np.isfinite(g).all() for g in grads.values())


def test_accuracy_and_label_shapes():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(logits, np.array([[0], [1], [0]])) == 1.0  # (n, 1) labels, as queues give them
    with pytest.raises(ValueError, match="labels"):
        accuracy(logits, np.array([0, 1]))


def test_sgd_and_momentum_updates():
    g = {"w": np.float32([1.0, -2.0])}
    p = {"w": np.zeros(2, np.float32)}
    SGD(0.5).apply(p, g)
    np.testing.assert_allclose(p["w"], [-0.5, 1.0])
    m = Momentum(lr=1.0, momentum=0.5)
    d1 = m.delta(g)["w"]
    d2 = m.delta(g)["w"]
    np.testing.assert_allclose(d1, [-1.0, 2.0])
    np.testing.assert_allclose(d2, [-1.5, 3.0])  # v = 0.5 * v + g
    restored = Momentum(lr=1.0, momentum=0.5)
    restored.load_state_dict(m.state_dict())
    np.testing.assert_allclose(restored.delta(g)["w"], m.delta(g)["w"])
    np.testing.assert_allclose(SGD(1.0).delta(g, scale=0.25)["w"], [-0.25, 0.5])


def test_make_optimizer_validates():
    assert isinstance(make_optimizer("momentum", 0.1), Momentum)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adam", 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        SGD(0.0)
