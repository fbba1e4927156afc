"""Argument types shared by the subcommands: one parser of ``KEY=VALUE``.

``--option`` (``mtlue prepare``), ``--set`` (``mtlue poison``), ``--weighting-option`` and
``--defense-set`` (``mtlue victim``) all take ``KEY=VALUE`` with a YAML value, so ``3`` is an
integer, ``true`` a boolean and ``[1, 2]`` a list, as the same setting in a config would be.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

__all__ = ["key_value"]


def key_value(text: str) -> tuple[str, Any]:
    """``"patch_size=8"`` -> ``("patch_size", 8)``; an argparse ``type``, so a bad one is a usage error."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"the value of {key} is not valid YAML ({error}); quote it") from None
