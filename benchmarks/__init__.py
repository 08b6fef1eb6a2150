"""optica's speed and memory, measured side by side with the reference a user would otherwise pick
(transformers for the same model and batch). Run ``python -m benchmarks.run [name]``; results go
into ``benchmarks/RESULTS.md`` with the machine, versions and the exact command.
"""
