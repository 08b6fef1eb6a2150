"""Optimizers and LR schedules (seed 000's optim block)."""

import math

import pytest
import torch
from torch import nn

from optica import run
from optica.run.errors import ConfigError
from optica.train.optim import OptimizerConfig, build_optimizer, parameter_groups
from optica.train.schedules import Constant, CosineAnnealing, WarmupPolicy, build_scheduler


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision_projection = nn.Linear(4, 4)
        self.language_model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def lrs(schedule, steps, max_steps, lr=1.0):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(schedule, optimizer, max_steps=max_steps, lr=lr)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_seed_000_block_builds_adamw_without_decay_on_bias_and_norm():
    config = OptimizerConfig(
        name="fused_adam",
        lr=1e-4,
        eps=1e-8,
        betas=(0.9, 0.999),
        weight_decay=0.01,
        sched=WarmupPolicy(warmup_steps=10000),
    )
    optimizer = build_optimizer(config, Tiny())
    assert isinstance(optimizer, torch.optim.AdamW)
    decays = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {"default": 0.01, "default (no decay)": 0.0}
    counts = {g["name"]: len(g["params"]) for g in optimizer.param_groups}
    assert counts == {"default": 2, "default (no decay)": 4}  # two weights; 2 biases + LN w/b
    assert optimizer.defaults["fused"] is True and optimizer.defaults["eps"] == 1e-8


def test_frozen_parameters_never_reach_the_optimizer():
    model = Tiny()
    optimizer = build_optimizer(OptimizerConfig(), model)
    given = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) not in given for p in model.frozen.parameters())


def test_param_groups_by_pattern_get_their_own_lr():
    config = OptimizerConfig(lr=1e-3, param_groups={"vision_projection.*": {"lr": 2e-5}})
    named = list(Tiny().named_parameters())
    groups = {g["name"]: g for g in parameter_groups(config, named)}
    assert groups["vision_projection.*"]["lr"] == 2e-5
    assert groups["vision_projection.* (no decay)"]["weight_decay"] == 0.0
    assert "lr" not in groups["default"]  # falls back to optim.lr


def test_sgd_and_adam_and_errors():
    sgd = build_optimizer(OptimizerConfig(name="sgd", momentum=0.9, weight_decay=0), Tiny())
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert type(build_optimizer(OptimizerConfig(name="adam"), Tiny())) is torch.optim.Adam
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'; did you mean 'adam'"):
        OptimizerConfig(name="adamm")
    with pytest.raises(ConfigError, match="unknown key 'lrr'; did you mean 'lr'"):
        OptimizerConfig(param_groups={"*": {"lrr": 1}})
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(OptimizerConfig(), Tiny().requires_grad_(False))


def test_warmup_policy_is_linear_then_constant():
    assert lrs(WarmupPolicy(warmup_steps=4), 6, None) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lrs(WarmupPolicy(warmup_ratio=0.5), 4, max_steps=4) == [0.5, 1.0, 1.0, 1.0]
    assert lrs(None, 3, None) == lrs(Constant(), 3, None) == [1.0, 1.0, 1.0]


def test_cosine_annealing_with_warmup_constant_and_min_lr():
    schedule = CosineAnnealing(warmup_steps=2, constant_steps=1, min_lr=0.1)
    values = lrs(schedule, 8, max_steps=7)
    expected_decay = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert values[:3] == [0.5, 1.0, 1.0]
    assert values[3:] == pytest.approx(expected_decay)
    assert values[-1] == pytest.approx(0.1)


def test_schedule_mistakes_are_one_line():
    with pytest.raises(ConfigError, match="warmup_steps or warmup_ratio, not both"):
        WarmupPolicy(warmup_steps=1, warmup_ratio=0.1)
    with pytest.raises(ConfigError, match="needs trainer.max_steps"):
        lrs(CosineAnnealing(), 1, max_steps=None)
    with pytest.raises(ConfigError, match="min_lr .* exceeds optim.lr"):
        lrs(CosineAnnealing(min_lr=2.0), 1, max_steps=5)


def test_optimizer_config_round_trips_through_yaml():
    config = run.Config(
        OptimizerConfig,
        name="sgd",
        betas=(0.8, 0.9),
        sched=run.Config(CosineAnnealing, warmup_ratio=0.03, min_lr=1e-6),
    )
    assert run.from_yaml(run.to_yaml(config)) == config
    assert run.build(config).sched.warmup_ratio == 0.03
