"""The model zoo: one file per family, one registry."""

from .registry import ModelConfig, count_macs, count_params, create_model, get_default_config, list_models  # noqa: F401
