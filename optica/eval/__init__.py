"""Evaluation of trained models: VLM answer accuracy by teacher-forced exact match over a batch
(:mod:`optica.eval.vqa`, used during training and by ``optica demo``) and by generation from a
checkpoint (:mod:`optica.eval.generation_eval`, ``optica eval``)."""
