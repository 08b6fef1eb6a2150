"""Evaluation of trained models: VLM answer accuracy (:mod:`optica.eval.vqa`)."""
