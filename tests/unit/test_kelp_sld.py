"""SLD head, ATC loss and stop rule: hand-computed cases and streaming invariants."""
import math
import random

import pytest
import torch

from tidegate.services.token_risk.kelp.sld import (SLDHead, atc_loss, dense_ce_loss, first_flag, load_head,
                                                   running_max, save_head, token_targets_atc)


def _logit(p):
    return math.log(p / (1 - p))


def test_atc_loss_hand_computed():
    p = [0.1, 0.3, 0.2]
    logits = torch.tensor([[_logit(x) for x in p]])
    mask = torch.ones(1, 3)
    # anchors: first token benign, last token harmful
    target = torch.tensor([[0.0, 0.0, 1.0]])
    weight = torch.tensor([[1.0, 0.0, 1.0]])
    total, parts = atc_loss(logits, mask, target, weight, lam_smooth=0.5, lam_mono=2.0)
    ce = (-math.log(0.9) - math.log(0.2)) / 2
    smooth = (0.2 + 0.1) / 2
    mono = (0.0 + 0.1) / 2
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["smooth"] == pytest.approx(smooth, rel=1e-5)
    assert parts["mono"] == pytest.approx(mono, rel=1e-5)
    assert float(total) == pytest.approx(ce + 0.5 * smooth + 2.0 * mono, rel=1e-5)


def test_atc_loss_ignores_padding_pairs():
    logits = torch.tensor([[_logit(0.5), _logit(0.5), _logit(0.9)]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the jump to 0.9 is padding and must not count
    _, parts = atc_loss(logits, mask, torch.zeros(1, 3), torch.ones(1, 3))
    assert parts["smooth"] == pytest.approx(0.0, abs=1e-6)
    assert parts["ce"] == pytest.approx(-math.log(0.5), rel=1e-5)


def test_dense_ce_loss_hand_computed():
    logits = torch.tensor([[_logit(0.8), _logit(0.6)]])
    loss, _ = dense_ce_loss(logits, torch.ones(1, 2), torch.tensor([1]))
    assert float(loss) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2, rel=1e-5)


def test_atc_targets_anchor_and_onset():
    lengths = torch.tensor([6, 6, 5])
    labels = torch.tensor([1, 0, 1])
    onsets = torch.tensor([-1, -1, 2])
    tgt, w = token_targets_atc(lengths, labels, onsets, T=6, anchor_k=2)
    # grounded harmful: first 2 -> 0, last 2 -> 1, middle unweighted
    assert w[0].tolist() == [1, 1, 0, 0, 1, 1] and tgt[0].tolist() == [0, 0, 0, 0, 1, 1]
    assert w[1].tolist() == [1, 1, 0, 0, 1, 1] and tgt[1].tolist() == [0, 0, 0, 0, 0, 0]
    # exact onset at token 2, dense: 0 before, 1 from the onset on, padding unweighted
    assert tgt[2, :5].tolist() == [0, 0, 1, 1, 1] and w[2].tolist() == [1, 1, 1, 1, 1, 0]


def test_stop_rule_is_monotone():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        p = torch.rand(40, generator=g)
        m = running_max(p)
        assert torch.all(m[1:] >= m[:-1])
        thr = float(torch.rand(1, generator=g))
        idx = first_flag(m, thr)
        if idx is None:
            assert float(m[-1]) < thr
        else:
            assert torch.all(m[idx:] >= thr) and (idx == 0 or float(m[idx - 1]) < thr)
        # a lower threshold never stops later
        idx_lo = first_flag(m, thr * 0.5)
        assert idx is None or (idx_lo is not None and idx_lo <= idx)


def _head(window=8):
    torch.manual_seed(0)
    return SLDHead(hidden_dim=32, proj_dim=8, mem_dim=16, window=window).eval()


@pytest.mark.parametrize("window", [0, 3, 8])
def test_chunked_state_restore_matches_one_pass(window):
    head = _head(window)
    B, P, T = 3, 7, 50
    Hp, mask = torch.randn(B, P, 32), torch.ones(B, P, dtype=torch.bool)
    mask[1, :3] = False
    H = torch.randn(B, T, 32)
    with torch.no_grad():
        s0 = head.init_state(Hp, mask)
        _, full = head.scan(s0, H)
        rng = random.Random(1)
        cuts = sorted(rng.sample(range(1, T), 5))
        state, parts, prev = s0, [], 0
        for c in cuts + [T]:
            # the state leaves the process as bytes and comes back, as it would through Redis
            blob = state.numpy().tobytes()
            state = torch.frombuffer(bytearray(blob), dtype=torch.float32).reshape(B, -1)
            state, p = head.scan(state, H[:, prev:c])
            parts.append(p)
            prev = c
        # and token by token with step()
        st, steps = s0, []
        for t in range(T):
            st, p = head.step(st, H[:, t])
            steps.append(p)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-6)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-6)


def test_state_size_constant_in_length():
    head = _head(8)
    with torch.no_grad():
        s0 = head.init_state(torch.randn(2, 5, 32), None)
        sizes = set()
        for T in [1, 10, 100, 1000]:
            s, p = head.scan(s0, torch.randn(2, T, 32))
            sizes.add(tuple(s.shape))
            assert p.shape == (2, T)
    assert sizes == {(2, head.state_size)}
    assert s0.dtype == torch.float32


def test_prompt_conditions_initial_state():
    head = _head(4)
    with torch.no_grad():
        a = head.init_state(torch.randn(1, 5, 32), None)
        b = head.init_state(torch.randn(1, 5, 32), None)
    assert not torch.allclose(a, b)


def test_save_load_roundtrip(tmp_path):
    head = _head(4)
    save_head(head, {"protected_model": "tiny", "layer": 2, "threshold": 0.7}, tmp_path)
    head2, card = load_head(tmp_path)
    assert card["state_size"] == head.state_size and card["layer"] == 2 and card["threshold"] == 0.7
    x = torch.randn(1, 4, 32)
    with torch.no_grad():
        assert torch.allclose(head.scan(head.init_state(x, None), x)[1], head2.scan(head2.init_state(x, None), x)[1])
