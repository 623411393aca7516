"""realignkit: audit, predict and repair safety degradation after fine-tuning."""

__version__ = "0.1.0"
