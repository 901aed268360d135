"""MST: Masked Self-Supervised Transformer (the method, usable without Slurm, YAML or pandas)."""

__version__ = "0.1.0"
