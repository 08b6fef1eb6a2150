"""The training-step benchmark's code path on tiny models: the HF model is imported into optica,
both sides train in their own subprocess, and the first losses agree (identical weights and
batch). No timing is asserted."""

import pytest

from benchmarks import train_step


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "precision", "options"),
    [
        ("llava", "fp32", train_step.OpticaOptions()),
        ("vit", "bf16", train_step.OpticaOptions(step_in_backward=True)),
    ],
)
def test_both_sides_train_the_same_model(model, precision, options):
    result = train_step.run((model,), (precision,), tiny=True, steps=1, warmup=1, options=options)
    (row,) = result["rows"]
    assert row["optica_options"] == options.label()
    assert row["loss_match"], row["first_loss"]
    assert len(row["times_s"]["optica"]) == len(row["times_s"]["transformers"]) == 1
    assert all(v > 0 for v in row["peak_rss_mib"].values())
    assert "time ratio" in train_step.report(result)


def test_the_batch_is_the_same_samples_in_both_spellings():
    shape = train_step.SHAPES["llava"]["tiny"]
    batch = train_step.make_batch("llava", shape)
    ours, theirs = batch["optica"], batch["transformers"]
    patches = (shape["vision"]["image_size"] // shape["vision"]["patch_size"]) ** 2
    assert theirs["input_ids"].shape[1] == ours["input_ids"].shape[1] - 1 + patches
    assert (theirs["input_ids"] == shape["image_token"]).sum(1).tolist() == [patches] * 2
    text = theirs["input_ids"] != shape["image_token"]
    assert (
        theirs["input_ids"][text].tolist() == ours["input_ids"][ours["input_ids"] != -200].tolist()
    )
    assert (theirs["pixel_values"] == ours["images"]).all()
