"""Every registered recipe builds: through ``--dryrun`` on the command line and ``run.build``."""

import functools

import pytest

from optica import run
from optica.cli.main import main
from optica.recipes import common, llava15_7b, llava_tiny
from optica.run.cli import registry
from optica.run.errors import ConfigError
from optica.train.peft import Freeze, LoRA


def registered_recipes() -> list[tuple[str, str]]:
    """(command, recipe) for every recipe of ``optica.recipes`` (test plugins left out: another
    test may have loaded some into this process)."""
    return sorted(
        (command, name)
        for command, entry in registry.entrypoints().items()
        for name, recipe in registry.recipes_for(entry.fn).items()
        if recipe.fn.__module__.startswith("optica.recipes.")
    )


RECIPES = registered_recipes()


def test_the_promised_recipes_are_registered():
    names = {name for _, name in RECIPES}
    assert {"llava15_7b", "llava15_13b", "vit_b16", "vit_l16", "llava_tiny", "vit_tiny"} <= names
    assert ("pretrain", "llava15_7b") in RECIPES and ("finetune", "vit_b16") in RECIPES


@pytest.mark.parametrize(("command", "name"), RECIPES)
def test_recipe_dryrun(command, name, capsys):
    assert main([command, "--factory", name, "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert f"optica.train.api.{command}" in out and "trainer:" in out


@pytest.mark.parametrize(("command", "name"), RECIPES)
def test_recipe_builds(command, name):
    recipe = registry.recipes_for(registry.get_entrypoint(command).fn)[name]
    built = run.build(recipe.fn())
    assert isinstance(built, functools.partial)
    assert built.func is registry.get_entrypoint(command).fn


def test_llava15_hyper_parameters_follow_the_paper():
    lora = llava15_7b.finetune_recipe(peft_scheme="lora")
    assert (lora.optim.lr, lora.peft.dim, lora.peft.alpha) == (2e-4, 128, 256)
    assert lora.optim.param_groups == {"vision_projection.*": {"lr": 2e-5}}
    full = llava15_7b.finetune_recipe(peft_scheme="none", num_nodes=2)
    assert full.peft is None and full.optim.lr == 2e-5 and full.optim.sched.warmup_ratio == 0.03
    assert full.data.global_batch_size == 128 and full.data.seq_length == 2048
    assert full.trainer.num_nodes == 2 and full.trainer.devices == 8
    stage1 = llava15_7b.pretrain_recipe()
    assert stage1.optim.lr == 1e-3 and stage1.data.global_batch_size == 256
    assert run.build(stage1.freeze) == Freeze(language_model=True, vision_model=True)


def test_peft_scheme_typo_is_one_clear_error():
    with pytest.raises(ConfigError, match="did you mean 'lora'"):
        llava15_7b.finetune_recipe(peft_scheme="lroa")


def test_cli_factories_for_peft_and_optim(capsys):
    argv = ["finetune", "--factory", "llava_tiny", "peft=lora(dim=4)", "optim=sgd(lr=0.1)"]
    assert main([*argv, "--to-yaml"]) == 0
    task = run.from_yaml(capsys.readouterr().out)
    assert run.build(task.peft) == run.build(common.lora(dim=4))
    assert task.optim.name == "sgd" and task.optim.lr == 0.1
    assert isinstance(run.build(task.peft), LoRA)


def test_tiny_llava_vocabulary_matches_the_shapes_tokenizer():
    task = llava_tiny.finetune_recipe()
    data = run.build(task.data)
    model = run.build(task.model)
    assert model.config.language_transformer_config.vocab_size == len(data.tokenizer)


def test_factory_missing_a_required_parameter_is_one_line(capsys):
    argv = ["finetune", "--factory", "vit_tiny", "data=image_folder", "--dryrun"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "factory 'image_folder' needs root: image_folder(root=...)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main([*argv[:3], "data=image_folder(root=photos)", "--dryrun"]) == 0
