"""InternViT against a reference written for this test from the published definition — OpenGVLab's
``modeling_intern_vit.py`` for InternViT-300M-448px (``InternVisionModel``, remote code; the
architecture has no transformers class of that name). The reference keeps their parameter names
and their arithmetic (q, k, v stacked in one ``attn.qkv``, explicit softmax attention, bicubic
position resampling, ``x + attn(norm1(x)) * ls1``), so its state dict is a checkpoint in their
format. It is itself cross-checked against transformers' ``InternVLVisionModel`` (the same tower as
converted for the InternVL3-hf checkpoints), an independent implementation.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import InternVLVisionConfig, InternVLVisionModel

from optica.models import InternViTModel, UnsupportedModelError, load_hf, save_hf
from tests.parity.vision_models import images, max_diff

TOL = 1e-4
HIDDEN, HEADS, FFN, LAYERS, PATCH, IMAGE = 32, 4, 64, 3, 4, 16
HF_CONFIG = {  # InternViT-300M-448px's config.json, scaled down
    "architectures": ["InternVisionModel"],
    "model_type": "intern_vit_6b",
    "hidden_size": HIDDEN,
    "intermediate_size": FFN,
    "num_attention_heads": HEADS,
    "num_hidden_layers": LAYERS,
    "patch_size": PATCH,
    "image_size": IMAGE,
    "num_channels": 3,
    "hidden_act": "gelu",
    "norm_type": "layer_norm",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "qk_normalization": False,
    "initializer_factor": 0.1,
    "drop_path_rate": 0.1,
    "use_flash_attn": False,
}


class RefLayer(nn.Module):
    """``InternVisionEncoderLayer`` (no drop path: the reference runs in eval)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(HIDDEN, 3 * HIDDEN, bias=True)
        self.attn.proj = nn.Linear(HIDDEN, HIDDEN)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN, eps=1e-6), nn.LayerNorm(HIDDEN, eps=1e-6)
        self.ls1, self.ls2 = nn.Parameter(torch.ones(HIDDEN)), nn.Parameter(torch.ones(HIDDEN))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.attn.qkv(x).reshape(batch, tokens, 3, HEADS, width // HEADS)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q * (width // HEADS) ** -0.5) @ k.transpose(-2, -1)
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, width)
        return self.attn.proj(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x)) * self.ls1
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x)))) * self.ls2


class RefInternViT(nn.Module):
    """``InternVisionModel``: embeddings, then the layers; no norm before or after."""

    def __init__(self) -> None:
        super().__init__()
        grid = IMAGE // PATCH
        self.embeddings = nn.Module()
        self.embeddings.class_embedding = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.embeddings.patch_embedding = nn.Conv2d(3, HIDDEN, PATCH, stride=PATCH)
        self.embeddings.position_embedding = nn.Parameter(torch.zeros(1, grid * grid + 1, HIDDEN))
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(RefLayer() for _ in range(LAYERS))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        patches = emb.patch_embedding(pixels)
        batch, _, rows, cols = patches.shape
        tokens = torch.cat((emb.class_embedding.expand(batch, 1, -1),
                            patches.flatten(2).transpose(1, 2)), dim=1)  # fmt: skip
        grid = emb.position_embedding[:, 1:].reshape(1, IMAGE // PATCH, IMAGE // PATCH, -1)
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(rows, cols), mode="bicubic",
                             align_corners=False)  # fmt: skip
        grid = grid.reshape(1, -1, rows * cols).permute(0, 2, 1)
        return tokens + torch.cat((emb.position_embedding[:, :1], grid), dim=1)

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """All hidden states: the embeddings and each layer's output."""
        states = [self.embed(pixels)]
        for layer in self.encoder.layers:
            states.append(layer(states[-1]))
        return states


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Unit-variance scale: matrices and kernels N(0, 1/fan_in), norm scales and layer scales
    1 + N(0, 0.1²), biases N(0, 0.1²), class and position embeddings N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("bias"):
                param.copy_(0.1 * noise)
            elif "norm" in name or name.endswith(("ls1", "ls2")):
                param.copy_(1 + 0.1 * noise)
            elif "embedding" in name and "patch" not in name:
                param.copy_(noise)
            else:
                param.copy_(noise / math.sqrt(param[0].numel()))
    return model.eval()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The reference and its state dict saved as an InternViT checkpoint."""
    path = tmp_path_factory.mktemp("intern_vit")
    model = randomize(RefInternViT())
    (path / "config.json").write_text(json.dumps(HF_CONFIG))
    save_file(model.state_dict(), path / "model.safetensors", metadata={"format": "pt"})
    return path, model


@torch.no_grad()
def test_import_matches_the_reference(reference):
    path, ref = reference
    model = load_hf(path)
    assert isinstance(model, InternViTModel) and model.config.drop_path_rate == 0.1
    pixels = images(3)
    theirs = ref(pixels)
    diffs = {
        "last": max_diff(model(pixels), theirs[-1]),
        "layer -2": max_diff(model(pixels, feature_layer=-2), theirs[-2]),
        "all": max(max_diff(a, b) for a, b in zip(model.hidden_states(pixels), theirs)),
    }
    print(
        "[parity] intern_vit vs reference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    )
    assert max(diffs.values()) <= TOL and theirs[-1].abs().max() > 0.5


@torch.no_grad()
def test_reference_matches_transformers_internvl_vision(reference):
    """The reference agrees with transformers' independent implementation of the same tower."""
    _, ref = reference
    config = InternVLVisionConfig(
        hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, image_size=IMAGE, patch_size=PATCH, attention_bias=True,
        use_qk_norm=False, norm_type="layer_norm", layer_norm_eps=1e-6, use_mean_pooling=True,
    )  # fmt: skip
    hf_model = InternVLVisionModel(config).eval()
    hf_model.load_state_dict(to_internvl_hf(ref.state_dict()))
    diff = max_diff(hf_model(pixel_values=images(3)).last_hidden_state, ref(images(3))[-1])
    print(f"[parity] intern_vit reference vs transformers InternVLVisionModel: {diff:.2e}")
    assert diff <= TOL


def to_internvl_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenGVLab's names → transformers' InternVLVision names (q, k, v split)."""
    out = {
        "embeddings.cls_token": state["embeddings.class_embedding"],
        "embeddings.position_embeddings": state["embeddings.position_embedding"],
    }
    for param in ("weight", "bias"):
        conv = state[f"embeddings.patch_embedding.{param}"]
        out[f"embeddings.patch_embeddings.projection.{param}"] = conv
    renames = {
        "attn.proj": "attention.projection_layer",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
    }
    for i in range(LAYERS):
        ours, theirs = f"encoder.layers.{i}.", f"encoder.layer.{i}."
        for param in ("weight", "bias"):
            q, k, v = state[f"{ours}attn.qkv.{param}"].chunk(3)
            out.update({f"{theirs}attention.{n}_proj.{param}": t for n, t in zip("qkv", (q, k, v))})
            out.update({f"{theirs}{b}.{param}": state[f"{ours}{a}.{param}"]
                        for a, b in renames.items()})  # fmt: skip
        out[f"{theirs}lambda_1"], out[f"{theirs}lambda_2"] = (
            state[ours + "ls1"],
            state[ours + "ls2"],
        )
    return out


@torch.no_grad()
def test_internvl_chat_spelling_imports_the_tower(reference, tmp_path):
    """InternVL chat checkpoints hold the tower under ``vision_model.`` beside mlp1 and the LM."""
    path, ref = reference
    tensors = {f"vision_model.{k}": v for k, v in load_file(path / "model.safetensors").items()}
    tensors["mlp1.0.weight"] = torch.zeros(2)
    tensors["language_model.model.norm.weight"] = torch.zeros(2)
    (tmp_path / "config.json").write_text(json.dumps(HF_CONFIG))
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    pixels = images(2)
    assert max_diff(load_hf(tmp_path)(pixels), ref(pixels)[-1]) <= TOL


@torch.no_grad()
def test_export_is_a_checkpoint_in_the_published_format(reference, tmp_path):
    path, ref = reference
    out = save_hf(load_hf(path), tmp_path / "out")
    written = json.loads((out / "config.json").read_text())
    assert written["architectures"] == ["InternVisionModel"]
    assert {k: written[k] for k in HF_CONFIG if k != "use_flash_attn"} == {
        k: v for k, v in HF_CONFIG.items() if k != "use_flash_attn"
    }
    again = RefInternViT()
    again.load_state_dict(load_file(out / "model.safetensors"))  # strict: same names and shapes
    pixels = images(2)
    assert max_diff(again.eval()(pixels)[-1], ref(pixels)[-1]) == 0.0


def test_6b_style_towers_are_refused_in_one_line(reference, tmp_path):
    path, _ = reference
    (tmp_path / "config.json").write_text(json.dumps({**HF_CONFIG, "qk_normalization": True}))
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(UnsupportedModelError, match="without qk_normalization") as err:
        load_hf(tmp_path)
    assert "\n" not in str(err.value)
