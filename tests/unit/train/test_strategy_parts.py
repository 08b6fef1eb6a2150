"""The strategy's pieces that need no process group: context-parallel splitting and loss,
activation checkpointing, optimizer-state keys, atomic checkpoint directories."""

import pytest
import torch
from torch.distributed._composable.contract import _get_registry

from optica.models import LlamaConfigTiny, LlamaModel
from optica.models.modules.parallel import (
    ParallelConfig,
    apply_activation_checkpointing,
    load_balanced_positions,
)
from optica.run.errors import ConfigError
from optica.train.module import next_token_loss, token_loss
from optica.train.parallel.checkpoint import (
    META_FILE,
    DistributedCheckpointer,
    _runs,
    optimizer_groups_by_name,
    optimizer_state_from_groups,
)
from optica.train.parallel.clip import clip_grad_norm_
from optica.train.parallel.context import split_for_context_parallel
from optica.train.parallel.pipeline import stage_ids


def test_load_balanced_positions_pair_an_early_and_a_late_chunk():
    assert load_balanced_positions(16, 0, 2).tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    assert load_balanced_positions(16, 1, 2).tolist() == [4, 5, 6, 7, 8, 9, 10, 11]
    every = torch.cat([load_balanced_positions(24, r, 3) for r in range(3)])
    assert sorted(every.tolist()) == list(range(24))


@pytest.mark.parametrize("size", [2, 4])
def test_context_parallel_losses_average_to_the_full_sequence_loss(size):
    """Ranks hold unequal numbers of learned tokens; the denominators still give the mean."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 11, generator=generator)
    labels = torch.randint(0, 11, (3, 16), generator=generator)
    labels[:, :9] = -100
    batch = {"input_ids": torch.zeros(3, 16, dtype=torch.long), "labels": labels}
    losses = []
    for rank in range(size):
        part = split_for_context_parallel(batch, rank, size)
        index = part["position_ids"][0]
        assert part["input_ids"].shape == (3, 16 // size)
        losses.append(
            next_token_loss(logits[:, index], part["next_labels"], part["loss_denominator"])
        )
    assert torch.stack(losses).mean() == pytest.approx(token_loss(logits, labels).item(), abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"attention_mask": torch.tensor([[1] * 12 + [0] * 4])},
            "padded batches are not supported",
        ),
        ({"images": torch.zeros(1, 3, 4, 4)}, "images are not supported yet"),
    ],
)
def test_context_parallel_refuses_what_it_cannot_split(extra, expected):
    batch = {
        "input_ids": torch.zeros(1, 16, dtype=torch.long),
        "labels": torch.zeros(1, 16),
        **extra,
    }
    with pytest.raises(ConfigError, match=f"context parallelism \\(CP=2\\): {expected}"):
        split_for_context_parallel(batch, 0, 2)


def test_context_parallel_needs_the_length_divisible_by_twice_cp():
    batch = {"input_ids": torch.zeros(1, 10, dtype=torch.long), "labels": torch.zeros(1, 10)}
    with pytest.raises(ConfigError, match="sequence length 10 is not divisible by 2×CP=4"):
        split_for_context_parallel(batch, 0, 2)


def saved_activations(model, ids):
    count = 0

    def pack(tensor):
        nonlocal count
        count += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids).sum().backward()
    return count


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_activation_checkpointing_keeps_fewer_activations_and_the_same_names(mode):
    ids = torch.randint(0, 250, (2, 64), generator=torch.Generator().manual_seed(0))
    plain = LlamaModel(LlamaConfigTiny()).init_weights(0)
    names = [n for n, _ in plain.named_parameters()]
    baseline = saved_activations(plain, ids)
    model = LlamaModel(LlamaConfigTiny()).init_weights(0)
    apply_activation_checkpointing(
        list(model.decoder.layers), ParallelConfig(activation_checkpointing=mode)
    )
    assert saved_activations(model, ids) < baseline
    assert [n for n, _ in model.named_parameters()] == names
    torch.testing.assert_close(model(input_ids=ids), plain(input_ids=ids))


def test_full_checkpointing_of_the_first_layers_only():
    model = LlamaModel(LlamaConfigTiny(num_layers=3)).init_weights(0)
    config = ParallelConfig(activation_checkpointing="full", activation_checkpointing_layers=1)
    apply_activation_checkpointing(list(model.decoder.layers), config)
    marked = ["checkpoint" in (_get_registry(layer) or {}) for layer in model.decoder.layers]
    assert marked == [True, False, False]


def test_pipeline_stages_are_looped_over_the_ranks():
    assert [stage_ids(r, 2, 2) for r in range(2)] == [[0, 2], [1, 3]]
    assert stage_ids(1, 4, 1) == [1]


def test_optimizer_groups_are_stored_by_name_and_restored_with_current_parameters():
    current = {
        "state": {"w": {"step": torch.tensor(3.0)}},
        "param_groups": [
            {"name": "default", "lr": 0.1, "params": ["w"]},
            {"name": "default (no decay)", "lr": 0.1, "weight_decay": 0.0, "params": ["b"]},
        ],
    }
    saved = optimizer_groups_by_name(current)
    assert saved["param_groups"] == {
        "default": {"name": "default", "lr": 0.1},
        "default (no decay)": {"name": "default (no decay)", "lr": 0.1, "weight_decay": 0.0},
    }
    saved["param_groups"]["default"]["lr"] = 0.05
    reversed_order = {**current, "param_groups": current["param_groups"][::-1]}
    restored = optimizer_state_from_groups(saved, reversed_order)
    assert [(g["params"], g["lr"]) for g in restored["param_groups"]] == [
        (["b"], 0.1),
        (["w"], 0.05),
    ]


def test_runs_of_consecutive_indices():
    assert _runs([0, 1, 2, 8, 9, 4]) == [(0, 0, 3), (8, 3, 2), (4, 5, 1)]


def test_checkpoint_directories_are_replaced_atomically(tmp_path):
    checkpointer = DistributedCheckpointer()
    target = tmp_path / "last.ckpt"
    checkpointer.save({"state_dict": {"w": torch.ones(3)}}, {"global_step": 1}, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [".metadata", META_FILE, "__0_0.distcp"]
    )

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(Exception, match="disk full"):
        checkpointer.save({"state_dict": {"w": torch.zeros(3)}}, {"bad": Unpicklable()}, target)
    loaded = {"state_dict": {"w": torch.zeros(3)}}
    assert checkpointer.load(loaded, target) == {"global_step": 1}  # the good one is intact
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(3))
    checkpointer.save({"state_dict": {"w": torch.full((3,), 2.0)}}, {"global_step": 2}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # partial cleaned up
    assert checkpointer.load(loaded, target) == {"global_step": 2}


def test_loading_something_else_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a distributed checkpoint"):
        DistributedCheckpointer().load({}, tmp_path)


def test_gradient_clipping_matches_torch_on_plain_tensors():
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=generator)) for _ in range(3)]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, c in zip(params, copies):
        p.grad = torch.randn(p.shape, generator=generator)
        c.grad = p.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(copies, 0.5)
    assert clip_grad_norm_(params, 0.5) == pytest.approx(expected.item())
    for p, c in zip(params, copies):
        torch.testing.assert_close(p.grad, c.grad)
