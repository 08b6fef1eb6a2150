"""optica.recipes: training tasks as Python functions returning ``run.Partial`` (composition only;
the library never imports recipes).

    from optica.recipes import llava15_7b
    task = llava15_7b.finetune_recipe(name="mine", dir="/ckpts", num_nodes=1,
                                      num_gpus_per_node=8, peft_scheme="lora")
    run.run(task, executor=run.LocalExecutor(ntasks_per_node=8, launcher="torchrun"))

Importing this package registers every recipe for ``optica <command> --factory NAME`` and the
named configs of :mod:`optica.recipes.factories` (``peft=lora``, ``optim=sgd``, ``data=...``).
``optica recipes`` lists them.
"""

from optica.recipes import (
    factories,
    llava15_7b,
    llava15_13b,
    llava_tiny,
    vit_b16,
    vit_bigG14,
    vit_g14,
    vit_h14,
    vit_h16,
    vit_l16,
    vit_tiny,
)

__all__ = [
    "factories",
    "llava15_7b",
    "llava15_13b",
    "llava_tiny",
    "vit_b16",
    "vit_bigG14",
    "vit_g14",
    "vit_h14",
    "vit_h16",
    "vit_l16",
    "vit_tiny",
]
