"""optica.train — one training path for every model: optimizers, schedules, (soon) the module,
experiment manager, PEFT and the strategy."""
