"""The pieces of :class:`optica.train.strategy.ParallelStrategy`: its settings and their validation
(``settings``), the device mesh (``mesh``), context-parallel batches (``context``), the pipeline
step (``pipeline``), gradient clipping (``clip``), FP8 (``fp8``) and distributed checkpoints
(``checkpoint``)."""
