"""optica's own commands that take the override grammar: ``optica finetune|pretrain|validate``.

Each is the plain Python function registered as an entrypoint: ``optica finetune --factory
llava15_7b trainer.max_steps=100 peft=lora`` builds ``run.Partial(finetune, ...)`` from the
recipe, applies the overrides, and runs it (in this process, or through ``executor=...``).
``--config file.yaml`` takes a serialized task or a YAML in seed 000's layout
(:mod:`optica.cli.yaml_config`).
"""

from optica.cli.yaml_config import seed_task
from optica.run.cli import entrypoint
from optica.train.api import finetune, pretrain, validate

for _command in (finetune, pretrain, validate):
    entrypoint(_command, read_mapping=seed_task)
