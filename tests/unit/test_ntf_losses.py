"""NTF losses on small cases computed by hand."""
import math

import pytest
import torch

from tidegate.services.image_forensics.ntf.losses import (nt_xent, soft_contrastive_loss, stage1_loss,
                                                          trace_distance)


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_trace_distance_basic_angles():
    c = torch.tensor([1.0, 0.0])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])  # same direction, orthogonal, opposite
    assert torch.allclose(trace_distance(t, c), torch.tensor([0.0, 1.0, 2.0]))


def test_soft_contrastive_hard_weights_by_hand():
    # m = 1: real d=0.5 -> 0.25; fake d=0.2 -> (1-0.2)^2 = 0.64; fake d=1.5 -> 0
    d = torch.tensor([0.5, 0.2, 1.5])
    y = torch.tensor([0, 1, 1])
    got = soft_contrastive_loss(d, y, margin=1.0, soft=False)
    want = 0.5 * 0.25 + 0.5 * (0.64 + 0.0) / 2
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_soft_contrastive_soft_weights_by_hand():
    d = torch.tensor([0.5, 0.2, 1.5])
    y = torch.tensor([0, 1, 1])
    tau = 0.1
    # hardness: real 0.5-0.5=0; fakes 0.5-0.2=0.3 and 0.5-1.5=-1.0
    w1, w2 = _sig(0.3 / tau), _sig(-1.0 / tau)
    want = 0.5 * 0.25 + 0.5 * (w1 * 0.64 + w2 * 0.0) / (w1 + w2)
    got = soft_contrastive_loss(d, y, margin=1.0, tau=tau, soft=True)
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_soft_weights_carry_no_gradient_and_pull_push_directions():
    d = torch.tensor([0.5, 0.2], requires_grad=True)
    soft_contrastive_loss(d, torch.tensor([0, 1]), margin=1.0).backward()
    # real: dL/dd = 0.5 * 2d = 0.5 (pull towards the prototype); fake: 0.5 * -2(m-d) = -0.8 (push away)
    assert d.grad[0].item() == pytest.approx(0.5, abs=1e-6)
    assert d.grad[1].item() == pytest.approx(-0.8, abs=1e-6)


def test_soft_contrastive_single_class_batch():
    d = torch.tensor([0.3, 0.1])
    got = soft_contrastive_loss(d, torch.tensor([0, 0]), soft=False)
    assert got.item() == pytest.approx(0.5 * (0.09 + 0.01) / 2, abs=1e-6)


def test_nt_xent_by_hand():
    # two pairs, orthogonal: a = [e1, e2], b = [e1, e2]; tau = 1
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = a.clone()
    # for every view: positive sim 1, negatives: the other image's two views with sim 0
    want = -math.log(math.e / (math.e + 2.0))
    assert nt_xent(a, b, tau=1.0).item() == pytest.approx(want, abs=1e-6)


def test_stage1_loss_parts_by_hand():
    c = torch.tensor([1.0, 0.0])
    t1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    s1 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    s2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    parts = stage1_loss(t1, t2, s1, s2, c, tau=1.0, w_hom=2.0, w_inv=3.0, w_dec=4.0)
    assert parts["hom"].item() == pytest.approx((0 + 1 + 0 + 0) / 4)
    assert parts["inv"].item() == pytest.approx((0 + 1) / 2)
    assert parts["dec"].item() == pytest.approx((0 + 1 + 0 + 1) / 4)
    want = parts["inst"].item() + 2 * 0.25 + 3 * 0.5 + 4 * 0.5
    assert parts["total"].item() == pytest.approx(want, abs=1e-6)
