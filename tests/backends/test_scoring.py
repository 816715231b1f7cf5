"""Cached, packed label scoring must equal the naive one-forward-per-label reference."""

import numpy as np
import pytest
import torch

from tunewise.backends.scoring import score_continuations, score_continuations_naive


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("prefix", [[5, 6, 7, 8], []])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_cached_scoring_matches_naive(model, prefix, batch_size):
    suffixes = [[9, 10, 11], [12], [13, 14, 15, 16, 17], [18, 19]]
    conts = [[20], [21, 22, 23], [24, 25], [26, 27, 28, 29]]
    fast = score_continuations(model, prefix, suffixes, conts, batch_size=batch_size)
    slow = score_continuations_naive(model, prefix, suffixes, conts)
    assert fast.shape == (4, 4)
    np.testing.assert_allclose(fast, slow, atol=1e-4)


def test_empty_suffix_scores_from_prefix(model):
    fast = score_continuations(model, [1, 2, 3], [[], [4]], [[5, 6]], batch_size=2)
    slow = score_continuations_naive(model, [1, 2, 3], [[], [4]], [[5, 6]])
    np.testing.assert_allclose(fast, slow, atol=1e-4)


def test_progress_callback_counts_every_example(model):
    seen = []
    score_continuations(model, [1], [[2], [3], [4]], [[5]], batch_size=2, on_batch=seen.append)
    assert sum(seen) == 3


def test_empty_continuation_is_rejected(model):
    with pytest.raises(ValueError, match="at least one token"):
        score_continuations(model, [1], [[2]], [[]])


@pytest.mark.parametrize("prefix", [[5, 6, 7, 8, 9, 10, 11], []])
@pytest.mark.parametrize("budget,chunk", [(6, 2), (12, 3), (40, 40)])
def test_token_budget_and_chunked_prefill_match_naive(model, prefix, budget, chunk):
    """Batches bounded by tokens and long rows run a few columns at a time give the reference scores."""
    suffixes = [[30 + i for i in range(n)] for n in (1, 9, 3, 17, 2, 5)]
    conts = [[20], [21, 22, 23], [24, 25]]
    fast = score_continuations(model, prefix, suffixes, conts, batch_size=4, max_batch_tokens=budget,
                               prefill_chunk=chunk)
    slow = score_continuations_naive(model, prefix, suffixes, conts)
    np.testing.assert_allclose(fast, slow, atol=1e-4)


def test_token_budget_puts_a_long_row_alone(model):
    """One long suffix among short ones: it forms its own batch, the short ones still share batches."""
    seen = []
    suffixes = [[2, 3]] * 5 + [list(range(2, 60))] + [[4, 5]] * 5
    score_continuations(model, [1], suffixes, [[6]], batch_size=8, max_batch_tokens=32, on_batch=seen.append)
    assert seen == [1, 8, 2]  # the long row alone first (longest first), then the ten short ones by 8
