"""Pretrained weights without a network: fail once, fast, and say what to do offline.

huggingface_hub retries an unreachable hub for about a minute, printing every retry. Before
timm downloads anything, timmx checks in a few seconds whether the weights' host answers. If
it does not, the weights are looked up in the local cache only (huggingface_hub's offline mode)
and, when they are not there, the export stops with one message naming ``--checkpoint``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

from timmx.errors import ConfigurationError

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    """The Hugging Face endpoint huggingface_hub uses (``HF_ENDPOINT`` or huggingface.co)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return constants.ENDPOINT


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout`` seconds."""
    parts = urlparse(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def weights_source(timm, name: str) -> str | None:
    """The URL the pretrained weights of ``name`` come from (a hub endpoint or a plain URL)."""
    if name.startswith(("hf-hub:", "hf_hub:")):
        return hub_endpoint()
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        cfg = None
    if cfg is None:
        return hub_endpoint()
    if getattr(cfg, "hf_hub_id", None):
        return hub_endpoint()
    return getattr(cfg, "url", None) or hub_endpoint()


def _offline_flags() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextlib.contextmanager
def _cache_only() -> Iterator[None]:
    """huggingface_hub's offline mode for the block (cached files only, no requests)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


@contextlib.contextmanager
def pretrained_access(timm, name: str) -> Iterator[None]:
    """Around ``timm.create_model(name, pretrained=True)``: offline-safe weight loading.

    Raises a ConfigurationError (naming ``--checkpoint``) when the weights' host does not answer
    and the weights are not cached.
    """
    source = weights_source(timm, name)
    if _offline_flags() or source is None or reachable(source):
        yield
        return
    host = urlparse(source).hostname or source
    try:
        with _cache_only():
            yield
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"Cannot load the pretrained weights of {name!r}: {host} is unreachable from this "
            "machine and the weights are not in the local cache. Offline, save the weights "
            "where the hub is reachable (torch.save(model.state_dict(), 'weights.pth')) and "
            "export with --checkpoint weights.pth instead of --pretrained."
        ) from exc
