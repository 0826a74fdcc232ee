"""Bidirectional blocks of the backbone and the classifiers' ``bidirectional`` parameter."""
import numpy as np
import pytest
import torch

from ssmsignal import MambaClassifier, S4Classifier
from ssmsignal.models.backbone import (BackboneConfig, BidirectionalBlock, SequenceModel,
                                       reverse_valid)


def test_reverse_valid_reverses_each_row_in_place_and_is_an_involution():
    h = torch.randn(3, 6, 2)
    lengths = torch.tensor([6, 4, 1])
    out = reverse_valid(h, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :n], h[b, :n].flip(0), rtol=0, atol=0)
        torch.testing.assert_close(out[b, n:], h[b, n:], rtol=0, atol=0)  # padding stays
    torch.testing.assert_close(reverse_valid(out, lengths), h, rtol=0, atol=0)
    torch.testing.assert_close(reverse_valid(h, None), h.flip(1), rtol=0, atol=0)


def _net(layer, bidirectional, seed=0):
    torch.manual_seed(seed)
    cfg = BackboneConfig(n_channels=1, n_outputs=3, layer=layer, d_model=8, n_layers=2,
                         d_state=8, bidirectional=bidirectional)
    return SequenceModel(cfg).double().eval()


@pytest.mark.parametrize("layer", ["s4d", "mamba"])
def test_padded_rows_match_rows_alone_and_blocks_see_the_future(layer):
    net = _net(layer, True)
    assert all(isinstance(b, BidirectionalBlock) for b in net.blocks)
    torch.manual_seed(1)
    rows = [torch.randn(1, n, dtype=torch.float64) for n in (29, 13, 20)]
    x = torch.zeros(3, 1, 29, dtype=torch.float64)
    for b, r in enumerate(rows):
        x[b, :, : r.shape[1]] = r
    with torch.no_grad():
        together = net(x, torch.tensor([29, 13, 20]))  # (3, 3)
        alone = torch.cat([net(r[None]) for r in rows])  # (3, 3)
    torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-10)
    # the first step of a block's output depends on the last input step (not when causal)
    for bidirectional in (True, False):
        block = _net(layer, bidirectional).blocks[0]
        h = torch.randn(2, 17, 8, dtype=torch.float64)
        later = h.clone()
        later[:, -1] += torch.randn(2, 8, dtype=torch.float64)  # (LayerNorm drops a shift)
        with torch.no_grad():
            first = block(h)[:, 0] - block(later)[:, 0]  # (2, 8)
        assert (first.abs().max() > 1e-6) == bidirectional


def test_bidirectional_gradients_reach_both_directions():
    net = _net("s4d", True).train()
    x = torch.randn(2, 1, 25, dtype=torch.float64)
    net(x, torch.tensor([25, 11])).sum().backward()
    block = net.blocks[0]
    for layer in (block.forward_layer, block.backward_layer):
        grads = [p.grad for p in layer.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_bidirectional_refuses_a_per_step_head():
    with pytest.raises(ValueError, match="per-step"):
        SequenceModel(BackboneConfig(n_channels=1, n_outputs=1, d_model=8, n_layers=1,
                                     d_state=4, per_step=True, bidirectional=True))


@pytest.mark.parametrize("cls", [S4Classifier, MambaClassifier])
def test_bidirectional_classifier_learns_rescales_and_saves(cls, tiny, make_tones, tmp_path):
    X, y = make_tones(n=48, length=40)
    clf = cls(**{**tiny, "max_epochs": 15, "lr": 1e-2}, bidirectional=True)
    clf.fit(X[:, 0], y, sampling_rate=40.0)
    assert clf.module_.config.bidirectional and clf.score(X[:, 0], y) >= 0.9
    half = clf.predict_proba(X[:, 0, ::2], sampling_rate=20.0)
    assert half.shape == (48, 2) and not np.allclose(half, clf.predict_proba(X[:, 0, ::2]))
    series = [X[0, 0, :17], X[1, 0], X[2, 0, :30]]  # unequal lengths, padded inside
    alone = np.concatenate([clf.predict_proba(s[None]) for s in series])
    np.testing.assert_allclose(clf.predict_proba(series), alone, rtol=1e-4, atol=1e-6)
    clf.save(tmp_path / "m")
    back = cls.load(tmp_path / "m")
    assert back.bidirectional is True
    np.testing.assert_array_equal(back.predict_proba(X[:, 0]), clf.predict_proba(X[:, 0]))


@pytest.mark.parametrize("cls", [S4Classifier, MambaClassifier])
def test_classifiers_pickled_before_the_parameter_are_unidirectional(cls):
    from sklearn.base import clone

    state = cls(bidirectional=True).__getstate__()
    state.pop("bidirectional")  # as pickled before the parameter existed
    old = cls.__new__(cls)
    old.__setstate__(state)
    assert old.get_params()["bidirectional"] is False and clone(old).bidirectional is False
    assert old._backbone_kwargs()["bidirectional"] is False
