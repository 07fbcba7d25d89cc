"""Memory bank: exactly the top-s per class, whatever the update order; retrieval; state_dict round trip."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from rskp_plugin.method.memory import MemoryBank


def _stream(seed, videos, n, c, d):
    g = torch.Generator().manual_seed(seed)
    reps = torch.randn(videos, n, d, generator=g)
    scores = torch.rand(videos, n, c, generator=g)  # distinct with probability 1
    labels = (torch.rand(videos, c, generator=g) < 0.4).float()
    labels[torch.arange(videos), torch.randint(0, c, (videos,), generator=g)] = 1.0
    return reps, scores, labels


@given(st.integers(0, 2**16), st.integers(1, 12), st.integers(1, 9), st.integers(1, 6), st.integers(1, 4))
def test_keeps_exactly_top_s_per_class_in_any_order(seed, videos, n, slots, batch):
    c, d = 4, 3
    reps, scores, labels = _stream(seed, videos, n, c, d)
    banks = []
    for order in (torch.arange(videos), torch.randperm(videos, generator=torch.Generator().manual_seed(seed))):
        bank = MemoryBank(c, slots, d)
        for start in range(0, videos, batch):
            idx = order[start : start + batch]
            bank.update(reps[idx], scores[idx], labels[idx])
        banks.append(bank)
    for cls in range(c):
        cand_scores = scores[:, :, cls][labels[:, cls] > 0].flatten()
        cand_reps = reps[labels[:, cls] > 0].reshape(-1, d)
        keep = min(slots, cand_scores.numel())
        best = cand_scores.topk(keep).indices
        for bank in banks:
            assert int(bank.filled[cls].sum()) == keep
            got = bank.scores[cls, :keep]
            torch.testing.assert_close(got, cand_scores[best])
            torch.testing.assert_close(bank.bank[cls, :keep], cand_reps[best])


@given(st.integers(0, 2**16), st.integers(1, 8), st.integers(1, 5), st.integers(1, 4), st.integers(0, 6))
def test_in_order_retrieval_equals_retrieve_then_update_video_by_video(seed, videos, n, slots, prefilled):
    """Row i of a batch sees the bank the official loop shows video i: after rows < i were offered."""
    c, d = 4, 3
    reps, scores, labels = _stream(seed, videos + prefilled, n, c, d)
    labels[prefilled:][torch.rand(videos, c, generator=torch.Generator().manual_seed(seed)) < 0.15] = 0.0  # some unlabeled
    bank = MemoryBank(c, slots, d)
    if prefilled:
        bank.update(reps[:prefilled], scores[:prefilled], labels[:prefilled])
    reps, scores, labels = reps[prefilled:], scores[prefilled:], labels[prefilled:]
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    out, mask = bank.retrieve_in_order(reps, scores, labels)
    for k, v in bank.state_dict().items():
        assert torch.equal(v, before[k])  # retrieval alone leaves the bank as it was
    for i in range(videos):
        ref, ref_mask = bank.retrieve(labels[i : i + 1])
        width = ref.shape[1]
        assert torch.equal(mask[i, :width], ref_mask[0]) and not mask[i, width:].any()
        assert torch.equal(out[i, :width][ref_mask[0]], ref[0][ref_mask[0]])
        bank.update(reps[i : i + 1], scores[i : i + 1], labels[i : i + 1])


def test_retrieve_concatenates_classes_in_index_order_with_padding():
    bank = MemoryBank(3, 2, 1)
    reps = torch.arange(12.0).reshape(2, 6, 1)
    scores = torch.linspace(0, 1, 36).reshape(2, 6, 3)
    bank.update(reps, scores, torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    out, mask = bank.retrieve(torch.tensor([[0.0, 1, 1], [1.0, 0, 0]]))
    assert out.shape == (2, 4, 1) and mask.shape == (2, 4)
    torch.testing.assert_close(out[0, :2], bank.bank[1])
    torch.testing.assert_close(out[0, 2:], bank.bank[2])
    torch.testing.assert_close(out[1, :2], bank.bank[0])
    assert mask[0].all() and mask[1, :2].all() and not mask[1, 2:].any()


def test_unfilled_slots_are_masked_and_state_dict_round_trips():
    bank = MemoryBank(2, 5, 3)
    bank.update(torch.randn(1, 2, 3), torch.rand(1, 2, 2), torch.tensor([[1.0, 0.0]]))
    _, mask = bank.retrieve(torch.tensor([[1.0, 1.0]]))
    assert mask.tolist() == [[True, True, False, False, False] + [False] * 5]
    bank.ready.fill_(True)
    other = MemoryBank(2, 5, 3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.bank, bank.bank) and torch.equal(other.scores, bank.scores) and bool(other.ready)
    bank.reset()
    assert not bank.filled.any() and not bool(bank.ready)


def test_deferred_updates_leave_the_bank_and_apply_once_as_if_offered_in_turn() -> None:
    """Offers made inside ``deferred_updates`` are collected (the bank does not change); one update of their
    concatenation afterwards gives the bank that updating as they came gives."""
    reps, scores, labels = _stream(3, 7, 4, 3, 5)
    direct, deferred = MemoryBank(3, 2, 5), MemoryBank(3, 2, 5)
    for bank in (direct, deferred):
        bank.update(reps[:2], scores[:2], labels[:2])
    before = {k: v.clone() for k, v in deferred.state_dict().items()}
    with deferred.deferred_updates() as pending:
        for start in (2, 4, 6):
            direct.update(reps[start : start + 2], scores[start : start + 2], labels[start : start + 2])
            deferred.update(reps[start : start + 2], scores[start : start + 2], labels[start : start + 2])
        assert all(torch.equal(v, before[k]) for k, v in deferred.state_dict().items())
    assert [r.shape[0] for r, _, _ in pending] == [2, 2, 1]
    deferred.update(*(torch.cat(parts) for parts in zip(*pending)))
    assert torch.equal(deferred.bank, direct.bank) and torch.equal(deferred.scores, direct.scores)
    best = torch.zeros(1, 4, 3)
    best[0, 0, 0] = 2.0  # above every probability: it takes a slot of class 0 at once
    deferred.update(reps[:1], best, torch.tensor([[1.0, 0.0, 0.0]]))  # outside the block updates apply again
    assert float(deferred.scores[0].max()) == 2.0


def test_deferred_updates_do_not_nest() -> None:
    bank = MemoryBank(2, 2, 3)
    with bank.deferred_updates():
        try:
            with bank.deferred_updates():
                pass
        except RuntimeError as exc:
            assert "does not nest" in str(exc)
        else:
            raise AssertionError("nested deferred_updates did not raise")


def test_update_offers_the_rows_gather_returns() -> None:
    """``gather`` (every process's rows in data-parallel training) decides which candidates compete."""
    reps, scores, labels = _stream(5, 6, 3, 4, 2)
    gathered, whole = MemoryBank(4, 3, 2), MemoryBank(4, 3, 2)
    rest = iter([reps[3:], scores[3:], labels[3:]])  # what the other processes offered, in the order gathered
    seen = []

    def gather(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return torch.cat([x, next(rest)])

    gathered.update(reps[:3], scores[:3], labels[:3], gather=gather)
    whole.update(reps, scores, labels)
    assert seen == [(3, 3, 2), (3, 3, 4), (3, 4)]
    assert torch.equal(gathered.bank, whole.bank) and torch.equal(gathered.scores, whole.scores)
