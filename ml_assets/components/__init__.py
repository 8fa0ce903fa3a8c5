"""The use-case Component: one `defs.yaml` per use case in the defs folder becomes its whole graph."""

from ml_assets.components.use_case import UseCaseComponent

__all__ = ["UseCaseComponent"]
