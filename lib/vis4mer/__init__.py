"""vis4mer: ViS4mer (ECCV 2022) long-range video classification with S4, as a library and a pipeline."""

from vis4mer._logging import logger
from vis4mer.model import MeanPoolBaseline, TransformerBaseline, ViS4mer, build_model
from vis4mer.optim import build_optimizer
from vis4mer.s4 import S4

__all__ = ["S4", "MeanPoolBaseline", "TransformerBaseline", "ViS4mer", "build_model", "build_optimizer", "logger", "version"]


def version() -> str:
    """The installed vis4mer's version ("unknown" when it runs from a checkout not installed)."""
    try:
        from importlib.metadata import version as installed_version

        return installed_version("vis4mer")
    except Exception:
        return "unknown"
