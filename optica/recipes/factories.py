"""Named configs for command-line values: ``peft=lora``, ``optim=sgd(lr=0.1)``,
``data=llava_json(paths=conv.json,image_folder=img)``. Each is found by the type of the parameter
it sets (see :mod:`optica.run.cli.registry`), so ``peft=`` only offers PEFT configs.
"""

from __future__ import annotations

from optica import run
from optica.data.config import ImageDataConfig
from optica.data.neva import NevaLazyDataModule
from optica.data.synthetic import MockDataModule
from optica.recipes import common
from optica.run.cli import factory
from optica.train.optim import OptimizerConfig
from optica.train.peft import Freeze, LoRA


@factory(name="lora")
def lora(dim: int = 32, alpha: float = 32, dropout: float = 0.0) -> run.Config[LoRA]:
    """LoRA on every linear layer of the language model; the vision encoder stays trainable."""
    return common.lora(dim=dim, alpha=alpha, dropout=dropout)


@factory(name="freeze")
def freeze(
    language_model: bool = False, vision_model: bool = True, vision_projection: bool = False
) -> run.Config[Freeze]:
    """Freeze parts without adapters (default: the vision encoder, as LLaVA-1.5 does)."""
    return run.Config(
        Freeze,
        language_model=language_model,
        vision_model=vision_model,
        vision_projection=vision_projection,
    )


@factory(name="projector_only")
def projector_only() -> run.Config[Freeze]:
    """Both towers frozen: only the projector learns (LLaVA's stage 1)."""
    return common.projector_only()


def _optimizer(name: str, lr: float, weight_decay: float, warmup_steps: int, min_lr: float):
    return common.cosine_optim(
        name=name, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, min_lr=min_lr
    )


@factory(name="adamw")
def adamw(
    lr: float = 1e-4, weight_decay: float = 0.01, warmup_steps: int = 0, min_lr: float = 0.0
) -> run.Config[OptimizerConfig]:
    """AdamW with warm-up and cosine decay."""
    return _optimizer("adamw", lr, weight_decay, warmup_steps, min_lr)


@factory(name="adam")
def adam(
    lr: float = 1e-4, weight_decay: float = 0.0, warmup_steps: int = 0, min_lr: float = 0.0
) -> run.Config[OptimizerConfig]:
    """Adam (L2 weight decay) with warm-up and cosine decay."""
    return _optimizer("adam", lr, weight_decay, warmup_steps, min_lr)


@factory(name="sgd")
def sgd(
    lr: float = 0.03, weight_decay: float = 0.0, warmup_steps: int = 0, min_lr: float = 0.0
) -> run.Config[OptimizerConfig]:
    """SGD with momentum 0.9, warm-up and cosine decay (seed 002's ViT fine-tuning)."""
    return _optimizer("sgd", lr, weight_decay, warmup_steps, min_lr)


@factory(name="llava_json")
def llava_json(
    paths: str,
    image_folder: str | None = None,
    conv_template: str = "v1",
    tokenizer: str | None = None,
    seq_length: int = 2048,
    global_batch_size: int = 128,
    micro_batch_size: int = 1,
) -> run.Config[NevaLazyDataModule]:
    """Your LLaVA conversation JSON/JSONL (``conv_template=plain`` for projector pre-training)."""
    return run.Config(
        NevaLazyDataModule,
        paths=paths,
        data_config=run.Config(
            ImageDataConfig, image_folder=image_folder, conv_template=conv_template
        ),
        tokenizer=tokenizer,
        seq_length=seq_length,
        global_batch_size=global_batch_size,
        micro_batch_size=micro_batch_size,
    )


@factory(name="mock")
def mock(
    seq_length: int = 2048,
    image_size: int = 336,
    image_token_len: int = 576,
    global_batch_size: int = 1,
    micro_batch_size: int = 1,
) -> run.Config[MockDataModule]:
    """Random LLaVA-shaped samples (throughput and smoke tests)."""
    return run.Config(
        MockDataModule,
        seq_length=seq_length,
        image_size=image_size,
        image_token_len=image_token_len,
        global_batch_size=global_batch_size,
        micro_batch_size=micro_batch_size,
    )
