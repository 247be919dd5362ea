"""AdamW with the paper's parameter groups.

Parameters carrying an `_optim` dict (the S4 layer marks Λ, P, B and log Δ with lr 1e-3 and no
weight decay, as the paper does) get a group of their own per distinct dict; every other
parameter is in the default group with the run's lr and weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

from vis4mer.s4 import SSM_OPTIM


def parameter_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    default: list[nn.Parameter] = []
    special: dict[tuple, list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        hyper = getattr(parameter, SSM_OPTIM, None)
        if hyper is None:
            default.append(parameter)
        else:
            special.setdefault(tuple(sorted(hyper.items())), []).append(parameter)
    groups = [{"params": default, "lr": lr, "weight_decay": weight_decay}]
    groups += [{"params": params, **dict(hyper)} for hyper, params in special.items()]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.01, **adamw_kwargs) -> torch.optim.AdamW:
    """AdamW (paper: lr 1e-3, weight decay 0.01) with the S4 group at lr 1e-3, weight decay 0."""
    return torch.optim.AdamW(parameter_groups(model, lr, weight_decay), lr=lr, weight_decay=weight_decay, **adamw_kwargs)
