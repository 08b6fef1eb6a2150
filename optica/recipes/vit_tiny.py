"""A tiny ViT classifier on synthetic shapes (or an image folder): trains on a CPU in seconds.

optica finetune --factory vit_tiny
optica finetune --factory vit_tiny data=image_folder(root=photos/train,val_root=photos/val)
"""

from __future__ import annotations

from optica import run
from optica.data.image_folder import ImageFolderDataModule
from optica.data.shapes import ShapesConfig
from optica.data.synthetic import ShapesClassificationDataModule
from optica.models import ViTClassificationModel, ViTConfigTiny
from optica.recipes import common
from optica.recipes.llava_tiny import cpu_trainer
from optica.run.cli import factory
from optica.train.api import finetune, pretrain, validate
from optica.train.exp_manager import ExpManager, ResumeConfig

NAME = "vit_tiny"


@factory(name=NAME)
def model(num_classes: int = 3) -> run.Config[ViTClassificationModel]:
    """The tiny ViT (32 px, patch 8) with ``num_classes`` outputs (shapes: 3)."""
    config = run.Config(ViTConfigTiny, num_classes=num_classes, hidden_dropout=0.0)
    return run.Config(ViTClassificationModel, config)


@factory(name="shapes_classification")
def shapes_classification(
    label: str = "shape", num_train_samples: int = 20_000, num_val_samples: int = 256
) -> run.Config[ShapesClassificationDataModule]:
    """One synthetic shape per image (45-60% of the side), labelled by kind (3 classes) or
    colour."""
    return run.Config(
        ShapesClassificationDataModule,
        shapes=run.Config(ShapesConfig, size_range=(0.45, 0.6)),
        label=label,
        num_train_samples=num_train_samples,
        num_val_samples=num_val_samples,
        micro_batch_size=32,
        global_batch_size=32,
    )


@factory(name="image_folder")
def image_folder(
    root: str, val_root: str | None = None, image_size: int = 32
) -> run.Config[ImageFolderDataModule]:
    """Class-per-sub-folder images (set ``image_size`` to the model's ``img_h``)."""
    return run.Config(
        ImageFolderDataModule,
        root=root,
        val_root=val_root,
        image_size=image_size,
        micro_batch_size=32,
        global_batch_size=32,
    )


def _recipe(fn, name: str, dir: str | None, max_steps: int, num_classes: int) -> run.Partial:
    return run.Partial(
        fn,
        model=model(num_classes),
        data=shapes_classification(),
        trainer=cpu_trainer(max_steps),
        log=common.log(name, dir),
        optim=common.cosine_optim(lr=3e-3, warmup_steps=10, min_lr=1e-4, weight_decay=0.05),
        resume=common.resume(),
    )


@factory(target=finetune, name=NAME)
def finetune_recipe(
    name: str = NAME, dir: str | None = None, max_steps: int = 300, num_classes: int = 3
) -> run.Partial:
    """Tiny ViT classifier on synthetic shapes, on a CPU."""
    return _recipe(finetune, name, dir, max_steps, num_classes)


@factory(target=pretrain, name=NAME)
def pretrain_recipe(
    name: str = f"{NAME}_pretrain",
    dir: str | None = None,
    max_steps: int = 100,
    num_classes: int = 3,
) -> run.Partial:
    """Tiny ViT classifier from scratch on synthetic shapes, on a CPU."""
    return _recipe(pretrain, name, dir, max_steps, num_classes)


@factory(target=validate, name=NAME)
def validate_recipe(
    name: str = f"{NAME}_validate", dir: str | None = None, num_classes: int = 3
) -> run.Partial:
    """Top-1 / top-5 of a tiny ViT on held-out shapes (set resume.resume_from_checkpoint)."""
    return run.Partial(
        validate,
        model=model(num_classes),
        data=shapes_classification(),
        trainer=cpu_trainer(1),
        log=run.Config(ExpManager, exp_dir=dir or "./optica_experiments", name=name, ckpt=None),
        resume=run.Config(ResumeConfig, resume_if_exists=False),
    )
