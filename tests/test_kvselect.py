"""KV selection on synthetic tensors: skewing, partial columns, selection, eviction."""

from __future__ import annotations

import math

import pytest
import torch

from workloads.accuracy import kvselect as ks
from workloads.accuracy.kvmethods import h2o_online
from workloads.accuracy.kvmethods import infinigen as ig
from workloads.accuracy.kvmethods._base import SelectionInput, blocked_mask, keep_top_per_row
from workloads.accuracy.quant import group_fake_quant
from workloads.accuracy.specs import kv_method_names


def qk(H: int = 6, Hkv: int = 2, T: int = 40, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(3, 0.1, d, dtype=torch.float64)  # energy concentrated in a few directions
    mix = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    q = (torch.randn(H, T, d, generator=g, dtype=torch.float64) * scale) @ mix
    k = (torch.randn(Hkv, T, d, generator=g, dtype=torch.float64) * scale) @ mix
    return q, k


def test_skewed_scores_equal_the_original() -> None:
    q, k = qk()
    A = ig.skew_matrices(q, n_rep=3)  # [Hkv, d, d]
    A_q = A.repeat_interleave(3, dim=0)
    original = q @ k.repeat_interleave(3, dim=0).transpose(-1, -2)
    skewed = (q @ A_q) @ (k @ A).repeat_interleave(3, dim=0).transpose(-1, -2)
    torch.testing.assert_close(skewed, original, rtol=1e-10, atol=1e-10)
    eye = torch.eye(A.shape[-1], dtype=A.dtype).expand_as(A)
    torch.testing.assert_close(A.transpose(-1, -2) @ A, eye, rtol=1e-10, atol=1e-10)


def test_skewing_concentrates_query_energy() -> None:
    q, _ = qk()
    A = ig.skew_matrices(q, n_rep=3).repeat_interleave(3, dim=0)
    energy = (q @ A).pow(2).sum(dim=(1,))  # [H, d] column energies after skewing
    top3 = energy.topk(3, dim=-1).values.sum(-1) / energy.sum(-1)
    raw = q.pow(2).sum(dim=1)
    raw_top3 = raw.topk(3, dim=-1).values.sum(-1) / raw.sum(-1)
    assert torch.all(top3 > raw_top3)


def test_partial_columns_pick_the_heaviest() -> None:
    q = torch.zeros(4, 5, 8)
    k = torch.zeros(2, 5, 8)
    q[0:2, :, 6] = 5.0
    k[0, :, 1] = 3.0
    q[2:4, :, 2] = 1.0
    mask = ig.column_mask(*ig.window_masses(q, k, rep=2), n_cols=2, rule="sum")  # r = 0.25 of d = 8
    assert mask.shape == (2, 8) and mask.sum(-1).tolist() == [2, 2]
    assert set(mask[0].nonzero().flatten().tolist()) == {6, 1}
    assert 2 in mask[1].nonzero().flatten().tolist()


def test_keep_top_per_row_exact_counts() -> None:
    torch.manual_seed(0)
    scores = torch.randn(3, 10, 10)
    causal = ks.causal_mask(10, torch.device("cpu")).unsqueeze(0)
    counts = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    keep = keep_top_per_row(scores, counts, causal)
    assert torch.equal(keep.sum(-1), counts.expand(3, -1))
    assert not torch.any(keep & ~causal)
    # the kept entries are the largest allowed ones
    for h in range(3):
        for t in range(10):
            allowed = scores[h, t, : t + 1]
            best = set(allowed.topk(int(counts[t])).indices.tolist())
            assert set(keep[h, t].nonzero().flatten().tolist()) == best


def test_infinigen_counts_threshold_and_cap() -> None:
    s = torch.full((2, 4, 6), -math.inf)
    s[0, 3, :4] = torch.tensor([10.0, 7.0, 5.9, 9.5])  # within 4 of 10: 10, 7, 9.5 -> 3
    s[1, 3, :4] = torch.tensor([1.0, 0.0, -2.5, -3.5])  # within 4 of 1: 1, 0, -2.5 -> 3 (-3.5 is out)
    assert ig.infinigen_counts(s, 4.0, cap=10)[3] == 3
    assert ig.infinigen_counts(s, 4.0, cap=2)[3] == 2


@pytest.mark.parametrize("policy", ["fifo", "lru", "counter"])
def test_eviction_truly_removes_tokens(policy: str) -> None:
    torch.manual_seed(1)
    H, T, capacity = 3, 80, 50
    s = torch.randn(H, T, T).masked_fill(~ks.causal_mask(T, torch.device("cpu")), -math.inf)
    keep, counts, evicted_at = ig.evict_with_pool(s, alpha=2.0, cap=8, capacity=capacity, policy=policy)
    for h in range(H):
        victims = [(int(evicted_at[h, j]), j) for j in range(T) if evicted_at[h, j] >= 0]
        rows = [r for r, _ in victims]
        assert len(rows) == len(set(rows)) == T - capacity  # one new victim per row from `capacity` on
        for row, token in victims:
            assert token < max(1, row // 2)  # chosen among the oldest half
            assert not keep[h, row:, token].any()  # and never attended again
        if policy == "fifo":
            assert [j for _, j in sorted(victims)] == list(range(T - capacity))  # oldest first
    assert torch.all(keep.sum(-1) >= 1)


def test_lru_and_counter_differ_from_fifo() -> None:
    """The reference emulation's LRU/counter kept re-evicting one token; here each eviction is a new
    token, chosen by use, so the victims differ from FIFO's."""
    torch.manual_seed(2)
    H, T, capacity = 1, 80, 50
    s = torch.randn(H, T, T).masked_fill(~ks.causal_mask(T, torch.device("cpu")), -math.inf)
    sets = {}
    for policy in ("fifo", "lru", "counter"):
        _, _, evicted_at = ig.evict_with_pool(s, alpha=3.0, cap=10, capacity=capacity, policy=policy)
        sets[policy] = set((evicted_at[0] >= 0).nonzero().flatten().tolist())
        assert len(sets[policy]) == T - capacity
    assert sets["lru"] != sets["fifo"] and sets["counter"] != sets["fifo"]


def _h2o_by_hand(logits: torch.Tensor, cap: int) -> torch.Tensor:
    """H2O's real-drop cache, one head and one decode step at a time with Python sets: [T, T] attended."""
    T = logits.shape[0]
    recent = max(1, cap // 2)
    cache: set[int] = set()
    score = [0.0] * T
    seen = torch.zeros(T, T, dtype=torch.bool)
    for t in range(T):
        cache.add(t)
        idx = sorted(cache)
        probs = torch.softmax(logits[t, idx], dim=-1)
        for j, p in zip(idx, probs.tolist(), strict=True):
            score[j] += p
        seen[t, idx] = True
        if len(cache) >= cap:
            old = [j for j in cache if j < t + 1 - recent]
            if old:
                cache.remove(min(old, key=lambda j: (score[j], j)))
    return seen


def _selection_input(logits: torch.Tensor, cap: int, window: int | None = None) -> SelectionInput:
    H, T, _ = logits.shape
    return SelectionInput(None, None, 2, torch.zeros(H, T, 4), torch.zeros(H, T, 4), logits, 1.0, 1, cap, window)


def test_h2o_online_is_the_reference_cache() -> None:
    """Each decode step attends to exactly k entries (its own token among them), the k/2 most recent always,
    an evicted token never returns, and the choice equals a one-step-at-a-time Python version."""
    g = torch.Generator().manual_seed(3)
    H, T, cap = 3, 48, 10
    logits = (torch.randn(H, T, T, generator=g, dtype=torch.float64) * 2).masked_fill(
        blocked_mask(T, None, torch.device("cpu")), -math.inf)
    drop, counts = h2o_online.select(_selection_input(logits, cap))
    keep = ~drop  # rows cap..T-1
    assert keep.sum(-1).eq(cap).all() and counts[cap:].eq(cap).all()
    rows = torch.arange(cap, T)
    for back in range(cap // 2):
        assert keep[:, torch.arange(T - cap), rows - back].all()
    for h in range(H):
        by_hand = _h2o_by_hand(logits[h], cap)
        assert torch.equal(keep[h], by_hand[cap:])
        for j in range(T):  # a token's rows form one run: once evicted, it never returns
            present = keep[h][:, j].int()
            assert (present[1:] - present[:-1]).clamp(min=0).sum() <= int(j >= cap)


#: every method that selects from the layer's own queries and keys (InfiniGen also needs the captured layer inputs and
#: skewing matrices of a real forward: tests/test_loaders.py runs it)
STANDALONE = [m for m in kv_method_names() if ks.kv_method(m).select is not None and not ks.kv_method(m).needs_skew]


@pytest.mark.parametrize("name", STANDALONE)
def test_selections_stay_inside_a_sliding_window(name: str) -> None:
    g = torch.Generator().manual_seed(4)
    H, T, cap, window = 2, 40, 12, 8
    blocked = blocked_mask(T, window, torch.device("cpu"))
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    assert torch.equal(~blocked, (j <= i) & (j > i - window))  # transformers' sliding_window_overlay + causal
    logits = torch.randn(H, T, T, generator=g).masked_fill(blocked, -math.inf)
    drop, counts = ks.kv_method(name).select(_selection_input(logits, cap, window))
    assert not (~drop & blocked[cap:]).any()
    assert counts.max() <= window


def test_flexgen_group_quantisation() -> None:
    """4-bit asymmetric groups of 64 along the last dimension: per group 16 levels between its min and max, error at
    most half a step (plus FP16 rounding of min and scale), a partial last group handled by padding."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, 160, generator=g) * torch.linspace(0.1, 5, 160)
    y = group_fake_quant(x, 4, 64)
    assert y.shape == x.shape
    for lo, hi in ((0, 64), (64, 128), (128, 160)):
        gx, gy = x[..., lo:hi], y[..., lo:hi]
        step = (gx.amax(-1) - gx.amin(-1)) / 15
        assert (gy - gx).abs().amax(-1).le(step / 2 * 1.01 + 1e-3 * gx.abs().amax(-1)).all()
        assert all(len(torch.unique(r)) <= 16 for r in gy.reshape(-1, hi - lo))
    assert torch.equal(group_fake_quant(torch.zeros(2, 64), 4, 64), torch.zeros(2, 64))
