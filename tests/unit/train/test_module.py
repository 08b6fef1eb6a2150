"""TrainingModule.configure_model: pretrained parts, unused parameters, PEFT order."""

import torch

from optica.checkpoint import save
from optica.models import LlamaModel, LlavaConfigTiny, LlavaModel
from optica.models.vlm.llava.sizes import tiny_language
from optica.train.module import TrainingModule
from optica.train.peft import LoRA, LoRALinear


def test_llava_stage_one_starts_from_an_imported_language_model(tmp_path):
    language = LlamaModel(tiny_language()).init_weights(seed=3)
    save(language, tmp_path / "lm")
    model = LlavaModel(LlavaConfigTiny(language_model_from_pretrained=str(tmp_path / "lm")))
    module = TrainingModule(model)
    module.configure_model()
    for name, tensor in language.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[name], tensor), name
    assert not any(p.is_meta for p in model.parameters())


def test_unused_vision_layers_are_frozen_and_peft_applies_after_weights():
    model = LlavaModel(LlavaConfigTiny())
    module = TrainingModule(model, peft=LoRA(dim=2))
    module.configure_model()
    unused = set(model.unused_parameter_names())
    assert unused and all(not p.requires_grad for n, p in model.named_parameters() if n in unused)
    lora_b = model.language_model.decoder.layers[0].self_attention.linear_qkv.lora_b.weight
    assert torch.count_nonzero(lora_b) == 0  # init_weights ran before LoRA, not after
    adapted = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    module.configure_model()  # idempotent: no second set of adapters
    assert [n for n, m in model.named_modules() if isinstance(m, LoRALinear)] == adapted
