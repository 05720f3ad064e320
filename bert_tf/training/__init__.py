"""Training jobs as library functions, each with a config dataclass: `finetune`
(`FinetuneConfig`), `pretrain` (`PretrainConfig`), `squad` (`SquadConfig`); and what
they share: `RunOptions` (strategy, precision, checkpoints), `RunDir` (resume)."""
