"""ViT classifier recipes shared by the size modules (seed 002, NeMo's ViT page; Dosovitskiy et
al. 2021 for the warm-up):

* pre-training (:func:`pretrain`): ImageNet-1K at 224 px, 300 epochs, global batch 4096, Adam
  (0.9, 0.999), lr 3e-3 with 10k warm-up steps then cosine decay, weight decay 0.3, dropout 0.1;
* fine-tuning (:func:`finetune`): 20,000 steps at 512 px, global batch 512, SGD (momentum 0.9),
  lr 0.03 (seed range 0.003–0.06), 500 warm-up steps then cosine, no weight decay.

Data is an image folder per split (``<data_root>/train``, ``<data_root>/val``), one sub-folder
per class; ``data.root=...`` / ``data.val_root=...`` point elsewhere.
"""

from __future__ import annotations

from optica import run
from optica.data.image_folder import ImageFolderDataModule
from optica.models import ViTClassificationModel
from optica.recipes import common
from optica.run.cli import factory
from optica.train.api import finetune as finetune_fn
from optica.train.api import pretrain as pretrain_fn

PRETRAIN_RESOLUTION, FINETUNE_RESOLUTION = 224, 512


def image_folder(
    data_root: str, *, image_size: int, global_batch_size: int, micro_batch_size: int
) -> run.Config[ImageFolderDataModule]:
    return run.Config(
        ImageFolderDataModule,
        root=f"{data_root}/train",
        val_root=f"{data_root}/val",
        image_size=image_size,
        global_batch_size=global_batch_size,
        micro_batch_size=micro_batch_size,
        num_workers=8,
    )


def pretrain(
    model_config: type,
    *,
    name: str,
    dir: str | None,
    num_nodes: int,
    num_gpus_per_node: int,
    data_root: str,
    num_classes: int,
) -> run.Partial:
    """Seed 002's ViT pre-training on ``model_config``."""
    model = run.Config(
        model_config,
        img_h=PRETRAIN_RESOLUTION,
        img_w=PRETRAIN_RESOLUTION,
        num_classes=num_classes,
        hidden_dropout=0.1,
    )
    return run.Partial(
        pretrain_fn,
        model=run.Config(ViTClassificationModel, model),
        data=image_folder(
            data_root, image_size=PRETRAIN_RESOLUTION, global_batch_size=4096, micro_batch_size=64
        ),
        trainer=common.trainer(
            num_nodes=num_nodes, num_gpus_per_node=num_gpus_per_node, max_epochs=300
        ),
        log=common.log(name, dir, every_n_train_steps=1000),
        optim=common.cosine_optim(name="adam", lr=3e-3, warmup_steps=10_000, weight_decay=0.3),
        resume=common.resume(),
    )


def finetune(
    model_config: type,
    *,
    name: str,
    dir: str | None,
    num_nodes: int,
    num_gpus_per_node: int,
    data_root: str,
    num_classes: int,
    restore_from: str | None,
) -> run.Partial:
    """Seed 002's ViT fine-tuning at 512 px, from a pre-trained checkpoint (``restore_from``)."""
    model = run.Config(
        model_config,
        img_h=FINETUNE_RESOLUTION,
        img_w=FINETUNE_RESOLUTION,
        num_classes=num_classes,
        hidden_dropout=0.0,
    )
    return run.Partial(
        finetune_fn,
        model=run.Config(ViTClassificationModel, model),
        data=image_folder(
            data_root, image_size=FINETUNE_RESOLUTION, global_batch_size=512, micro_batch_size=8
        ),
        trainer=common.trainer(
            num_nodes=num_nodes, num_gpus_per_node=num_gpus_per_node, max_steps=20_000
        ),
        log=common.log(name, dir, every_n_train_steps=1000),
        optim=common.cosine_optim(name="sgd", lr=0.03, warmup_steps=500, weight_decay=0.0),
        resume=common.resume(restore_from),
    )


def make_recipes(recipe_name: str, model_config: type) -> tuple:
    """``(finetune_recipe, pretrain_recipe)`` for one size, registered as ``recipe_name`` for
    ``optica finetune`` and ``optica pretrain``: a size module is these two lines."""
    label = model_config.__doc__.split(" (")[0]

    def pretrain_recipe(
        name: str = f"{recipe_name}_pretrain",
        dir: str | None = None,
        num_nodes: int = 1,
        num_gpus_per_node: int = 8,
        data_root: str = "imagenet",
        num_classes: int = 1000,
    ) -> run.Partial:
        return pretrain(
            model_config,
            name=name,
            dir=dir,
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            data_root=data_root,
            num_classes=num_classes,
        )

    def finetune_recipe(
        name: str = f"{recipe_name}_finetune",
        dir: str | None = None,
        num_nodes: int = 1,
        num_gpus_per_node: int = 8,
        data_root: str = "imagenet",
        num_classes: int = 1000,
        restore_from: str | None = None,
    ) -> run.Partial:
        return finetune(
            model_config,
            name=name,
            dir=dir,
            num_nodes=num_nodes,
            num_gpus_per_node=num_gpus_per_node,
            data_root=data_root,
            num_classes=num_classes,
            restore_from=restore_from,
        )

    pretrain_recipe.__doc__ = f"{label} pre-training (seed 002: 224 px, Adam lr 3e-3, 300 epochs)."
    finetune_recipe.__doc__ = f"{label} fine-tuning (seed 002: 512 px, SGD lr 0.03, 20k steps)."
    factory(target=pretrain_fn, name=recipe_name)(pretrain_recipe)
    factory(target=finetune_fn, name=recipe_name)(finetune_recipe)
    return finetune_recipe, pretrain_recipe
