"""``MultiModalTaskEncoder``: energon samples → optica batches (seed 001's task encoder).

energon calls :meth:`encode_sample` on each sample (in its worker), :meth:`batch` on each group of
``micro_batch_size`` encoded samples, then :meth:`encode_batch`. optica's version hands each
sample to the encoder registered for its type (:mod:`optica.data.energon.samples`) and collates
with the JSON path's :class:`~optica.data.collate.Collator`, so batches have the same keys and
values as :class:`~optica.data.neva.NevaLazyDataModule`'s.

Bad samples follow ``on_bad_input``: ``error`` raises the one-line
:class:`~optica.data.errors.BadSampleError`; ``skip`` raises energon's ``SkipSample`` and carries
the :class:`~optica.data.errors.Problem` to the next batch this worker makes (``problems``), where
the DataModule counts it. The batch also carries energon's ``__restore_key__``, which lets the
DataModule rebuild batches that were fetched ahead but not yet trained on when it saves state.

NOTE: energon 7 takes the decoder from the task encoder's ``decoder`` class attribute; ``None``
leaves parts as bytes, which :mod:`optica.data.energon.fields` decodes like the JSON path.
"""

from __future__ import annotations

from collections.abc import Sequence

from optica.data.energon import require_energon

require_energon()

from megatron.energon import Cooker, SkipSample, TaskEncoder, stateless  # noqa: E402

from optica.data.collate import Collator  # noqa: E402
from optica.data.errors import (  # noqa: E402
    BadSampleError,
    DataConfigError,
    Problem,
    check_policy,
)
from optica.data.sample import DroppedSample, Sample  # noqa: E402


@stateless
def keep_raw(sample: dict) -> dict:
    """The cooker of crude samples: optica's encoders read the raw parts themselves."""
    return sample


class MultiModalTaskEncoder(TaskEncoder):
    """Encodes VQA, captioning, interleaved, similarity-interleaved and converted LLaVA samples.

    Args:
        encoders: Sample type name (``VQASample``, ..., ``CrudeSample`` for crude ones) → an object
            with ``encode(sample) -> Sample``; see :func:`default_encoders`.
        collator: The JSON path's collate (pad id, image size, image_token_len).
        on_bad_input: ``error`` or ``skip``.
    """

    decoder = None
    cookers = [Cooker(keep_raw)]

    def __init__(self, *, encoders: dict, collator: Collator, on_bad_input: str = "error"):
        super().__init__()
        check_policy(on_bad_input)
        self.encoders, self.collator, self.on_bad_input = dict(encoders), collator, on_bad_input
        self._skipped: list[Problem] = []  # per worker: reported with its next batch

    def register_encoder(self, sample_type: str, encoder) -> None:
        """Adds or replaces the encoder of a sample type (by class name)."""
        self.encoders[sample_type] = encoder

    @stateless
    def encode_sample(self, sample) -> Sample:
        encoder = self.encoders.get(type(sample).__name__)
        if encoder is None:
            known = ", ".join(sorted(self.encoders))
            raise DataConfigError(
                f"no optica encoder for energon sample type {type(sample).__name__} (known: "
                f"{known}); add one with MultiModalTaskEncoder.register_encoder"
            )
        try:
            encoded = encoder.encode(sample)
        except DroppedSample as err:
            self._skip(err.problems)
        except BadSampleError as err:
            if self.on_bad_input != "skip":
                raise
            self._skip(err.problems)
        encoded.problems = (*self._take_skipped(), *encoded.problems)
        encoded.__restore_key__ = _restore_key(sample)  # energon extends it to the batch's key
        return encoded

    def _skip(self, problems: Sequence[Problem]):
        self._skipped.extend(problems)
        raise SkipSample()

    def _take_skipped(self) -> list[Problem]:
        taken, self._skipped = self._skipped, []
        return taken

    @stateless
    def batch(self, samples: list[Sample]) -> dict:
        batch = self.collator(samples)
        batch["__restore_key__"] = ()
        return batch

    @stateless
    def encode_batch(self, batch: dict) -> dict:
        return batch


def _restore_key(sample) -> tuple:
    if isinstance(sample, dict):
        return tuple(sample.get("__restore_key__", ()))
    return tuple(getattr(sample, "__restore_key__", ()) or ())
