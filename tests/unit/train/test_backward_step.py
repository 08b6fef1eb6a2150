"""``optim.step_in_backward``: each parameter is updated inside the backward pass and its
gradient freed at once. The updates and optimizer state equal stepping after the backward pass
bit for bit (param groups, a schedule); no two gradients are alive at once; runs where it
cannot hold are refused in one line."""

import copy

import pytest
import torch

from optica.models import ViTClassificationModel, ViTConfigTiny
from optica.train.backward_step import step_in_backward, step_in_backward_problem
from optica.train.optim import OptimizerConfig, build_optimizer
from optica.train.schedules import CosineAnnealing, build_scheduler

CONFIG = OptimizerConfig(
    lr=1e-2,
    weight_decay=0.1,
    param_groups={"head.*": {"lr": 3e-2}},
    sched=CosineAnnealing(warmup_steps=1, min_lr=1e-3),
)


def _model_and_optimizer(model: torch.nn.Module):
    optimizer = build_optimizer(CONFIG, model)
    return model, optimizer, build_scheduler(CONFIG.sched, optimizer, max_steps=4, lr=CONFIG.lr)


def _train(model, optimizer, scheduler, steps: int = 3) -> None:
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2, 3, 4])
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()


def test_updates_and_optimizer_state_equal_stepping_after_the_backward_pass():
    reference = ViTClassificationModel(ViTConfigTiny(hidden_dropout=0.0)).init_weights(seed=0)
    after, after_optimizer, after_schedule = _model_and_optimizer(reference)
    inside, inside_optimizer, inside_schedule = _model_and_optimizer(copy.deepcopy(reference))
    step_in_backward(inside_optimizer)
    _train(after, after_optimizer, after_schedule)
    _train(inside, inside_optimizer, inside_schedule)
    for (name, expected), actual in zip(after.named_parameters(), inside.parameters(), strict=True):
        assert torch.equal(actual, expected), name
        assert actual.grad is None, name  # freed as soon as it was applied
    expected_state = after_optimizer.state_dict()
    actual_state = inside_optimizer.state_dict()
    assert actual_state["param_groups"] == expected_state["param_groups"]
    for index, state in expected_state["state"].items():
        for key, value in state.items():
            assert torch.equal(actual_state["state"][index][key], value), (index, key)


def test_no_two_gradients_are_alive_at_once():
    model = ViTClassificationModel(ViTConfigTiny(hidden_dropout=0.0)).init_weights(seed=0)
    optimizer = build_optimizer(OptimizerConfig(), model)
    alive = []
    for param in model.parameters():  # registered first, so it runs before the step's hook
        param.register_post_accumulate_grad_hook(
            lambda _: alive.append(sum(p.grad is not None for p in model.parameters()))
        )
    handles = step_in_backward(optimizer)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert len(alive) == len(list(model.parameters())) and max(alive) == 1
    for handle in handles:
        handle.remove()
    alive.clear()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert max(alive) == len(alive)  # without it every gradient stays until the step


@pytest.mark.parametrize(
    "setting, words",
    [
        ({"world_size": 2}, "one process"),
        ({"accumulate_grad_batches": 4}, "accumulate_grad_batches=4"),
        ({"gradient_clip_val": 1.0}, "gradient_clip_val=1.0"),
        ({"fp16_scaler": True}, "bf16"),
    ],
)
def test_runs_it_cannot_serve_are_named(setting, words):
    plain = dict(world_size=1, accumulate_grad_batches=1, gradient_clip_val=None, fp16_scaler=False)
    assert step_in_backward_problem(**plain) is None
    problem = step_in_backward_problem(**{**plain, **setting})
    assert problem is not None and words in problem and "\n" not in problem
