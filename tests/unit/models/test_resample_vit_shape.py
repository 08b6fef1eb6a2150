"""The ViT classifier's autoconfig shape carries its config's dropout (the memory model counts
dropout masks, and the runner rebuilds the ViT with dropout as the shape says)."""

from optica import run
from optica.autoconfig.runnable import model_config
from optica.models import ViTConfigTiny
from optica.models.vision.vit.parallelize import vit_shape


def test_the_shape_says_whether_the_config_drops_out():
    assert vit_shape(ViTConfigTiny(hidden_dropout=0.1)).vision.dropout
    assert vit_shape(ViTConfigTiny(hidden_dropout=0.0, attention_dropout=0.1)).vision.dropout
    assert not vit_shape(ViTConfigTiny(hidden_dropout=0.0)).vision.dropout


def test_the_runner_rebuilds_the_tiny_vit_with_its_dropout():
    shape = vit_shape(ViTConfigTiny())
    assert run.build(model_config(shape)).config.hidden_dropout == ViTConfigTiny().hidden_dropout
