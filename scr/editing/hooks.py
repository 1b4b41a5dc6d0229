"""Forward hooks as context managers: read a module's input, rewrite its output, or stop the forward pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch


class StopForward(Exception):
    """Raised by a hook to skip the rest of the network once the activations we need are recorded."""


@contextmanager
def capture_inputs(modules: dict, store: dict, stop_at: torch.nn.Module | None = None):
    """Record ``store[name] = input[0]`` of each module; raise StopForward after ``stop_at`` ran."""
    handles = []

    def make(name, module):
        def hook(mod, args, output):
            store[name] = args[0].detach()
            if module is stop_at:
                raise StopForward

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make(name, module)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def rewrite_output(module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Replace a module's output hidden states by ``fn(hidden)`` (block outputs may be tuples)."""

    def hook(mod, args, output):
        if isinstance(output, tuple):
            return (fn(output[0]),) + tuple(output[1:])
        return fn(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def capture_output(module: torch.nn.Module, store: dict, name: str, stop: bool = False):
    """Record ``store[name]`` = the module's output hidden states; raise StopForward after it if ``stop``."""

    def hook(mod, args, output):
        store[name] = (output[0] if isinstance(output, tuple) else output).detach()
        if stop:
            raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def frozen(model: torch.nn.Module):
    """Parameters stop requiring gradients (backward then only flows to the tensors we optimise)."""
    previous = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in previous:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in previous:
            p.requires_grad_(flag)
