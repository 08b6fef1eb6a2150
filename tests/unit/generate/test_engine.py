"""Decoding: the KV cache gives the tokens that recomputing the whole sequence gives (batched,
padded, images mixed with text-only rows); the preallocated cache equals the growing one;
stop tokens and the context length are honoured."""

import pytest
import torch

from optica.generate import CausalModel, Decoding, GenerationError, SamplingConfig, left_pad
from optica.models.modules.kv_cache import KVCache, StaticKVCache
from tests.unit.generate.conftest import pixels

IMG = -200


def run(model, rows, images=None, *, use_cache=True, new=12, stop_ids=(), sampling=None):
    ids, mask = left_pad(rows, 0)
    decoding = Decoding(
        CausalModel(model), ids, mask, images, max_new_tokens=new,
        sampling=sampling or SamplingConfig(), stop_ids=list(stop_ids), pad_id=0,
        use_cache=use_cache,
    )  # fmt: skip
    return torch.stack(list(decoding), dim=1)


def test_cache_equals_recomputing_for_a_padded_text_batch(llama):
    rows = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [100, 101, 102, 103, 104]]
    cached = run(llama, rows, new=20)
    assert cached.shape == (3, 20)
    assert torch.equal(cached, run(llama, rows, new=20, use_cache=False))
    # each row alone (no padding at all) gives its batched tokens
    assert all(torch.equal(run(llama, [r], new=20)[0], cached[i]) for i, r in enumerate(rows))


def test_cache_equals_recomputing_with_images(llava):
    rows = [[1, IMG, 10, 11, IMG, 12], [1, 20, 21], [IMG, 30, 31, 32, 33]]
    images = pixels(3)
    cached = run(llava, rows, images, new=6)
    assert torch.equal(cached, run(llava, rows, images, new=6, use_cache=False))
    alone = run(llava, rows[2:], images[2:], new=6)[0]
    assert torch.equal(alone, cached[2])


def test_sampling_with_a_seed_is_reproducible_and_cache_independent(llama):
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, repetition_penalty=1.2, seed=7)
    rows = [[5, 6, 7], [8, 9]]
    first = run(llama, rows, sampling=sampling)
    assert torch.equal(first, run(llama, rows, sampling=sampling, use_cache=False))


def test_stop_ids_finish_rows_and_pad_them(llama):
    rows = [[5, 6, 7], [8, 9, 10]]
    free = run(llama, rows, new=8)
    stop = int(free[0, 2])
    stopped = run(llama, rows, new=8, stop_ids=[stop])
    first_stop = int((free[0] == stop).nonzero()[0])
    assert torch.equal(stopped[0, : first_stop + 1], free[0, : first_stop + 1])
    assert (stopped[0, first_stop + 1 :] == 0).all()


def test_prompt_longer_than_the_context_is_one_line(llama):
    with pytest.raises(GenerationError, match="the prompt takes 300 tokens .* context holds 256"):
        run(llama, [[5] * 300])
    assert run(llama, [[5] * 250], new=20).shape[1] == 6  # generation stops at the context


def test_static_cache_equals_growing_cache(llama):
    ids = torch.randint(0, 250, (2, 10), generator=torch.Generator().manual_seed(0))
    outputs = []
    for cache in (KVCache(), StaticKVCache(10)):
        with torch.no_grad():
            steps = [llama(input_ids=ids[:, :6], kv_cache=cache)]
            steps += [llama(input_ids=ids[:, t : t + 1], kv_cache=cache) for t in range(6, 10)]
        outputs.append(torch.cat(steps, dim=1))
        assert cache.offset == 10
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="holds 10 tokens; 11 do not fit"):
        cache.append(0, *(torch.zeros(2, 2, 1, 16),) * 2)
    cache.reset()
    assert cache.offset == 0
