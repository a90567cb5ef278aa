"""Loading user checkpoints safely (``weights_only=True``) in the shapes people save them."""

from pathlib import Path

from timmx.errors import ConfigurationError

_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema", "module")


def _unwrap(obj: object, path: Path) -> dict:
    for _ in range(3):
        if isinstance(obj, dict) and not any(_is_tensor(v) for v in obj.values()):
            for key in _WRAPPER_KEYS:
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict) or not obj or not all(_is_tensor(v) for v in obj.values()):
        raise ConfigurationError(
            f"Checkpoint {path} holds no state_dict. Expected a dict of tensors, optionally "
            "under 'state_dict' or 'model'."
        )
    return obj


def _is_tensor(value: object) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _strip_prefixes(state_dict: dict) -> dict:
    for prefix in ("module.", "_orig_mod.", "model."):
        if all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def safe_torch_load(path: Path, what: str, fix: str):
    """``torch.load(path, weights_only=True)`` with errors a user can act on.

    A file holding pickled Python objects (code that could run on load) is refused and said to
    be so; anything else unreadable is called corrupt. ``what`` names the file ("checkpoint",
    "calibration tensor"), ``fix`` says how to make a good one. Nothing of torch's own advice
    (to load with ``weights_only=False``, the unsafe option) reaches the user.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or unsafe (pickled code) files
        raise ConfigurationError(f"Could not read {what} {path}: {_explain(exc, fix)}") from exc


def load_state_dict(path: Path) -> dict:
    """Read a state_dict from a .safetensors file or a torch file (``weights_only=True``).

    Accepts a bare state_dict, ``{"state_dict": ...}``, ``{"model": ...}`` and keys prefixed
    with ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile).
    """
    if not path.is_file():
        raise ConfigurationError(f"Checkpoint {path} does not exist or is not a file.")
    fix = "Save one with torch.save(model.state_dict(), path) or safetensors' save_file."
    if path.suffix != ".safetensors":
        return _strip_prefixes(_unwrap(safe_torch_load(path, "checkpoint", fix), path))
    try:
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    except Exception as exc:  # corrupt or truncated
        raise ConfigurationError(f"Could not read checkpoint {path}: {_explain(exc, fix)}") from exc
    return _strip_prefixes(_unwrap(obj, path))


def _explain(exc: BaseException, fix: str) -> str:
    # torch 2.6-2.12 say "Unsupported global", 2.13 "unsupported GLOBAL": match either case.
    if "unsupported global" in str(exc).lower():
        return (
            "it holds pickled Python objects besides tensors, which timmx refuses to load "
            "(weights_only=True: loading them could run code). Re-save the tensors alone: "
            "torch.save(model.state_dict(), path), or use .safetensors."
        )
    return (
        f"it is corrupt, truncated or not a PyTorch/safetensors file ({type(exc).__name__}). " + fix
    )


def apply_checkpoint(model, path: Path) -> None:
    """Load the checkpoint at ``path`` into ``model``, strictly, with a readable mismatch error."""
    state_dict = load_state_dict(path)
    missing, unexpected = _mismatch(model, state_dict)
    if missing or unexpected or _shape_mismatch(model, state_dict):
        details = []
        if missing:
            details.append(f"missing keys: {_few(missing)}")
        if unexpected:
            details.append(f"unexpected keys: {_few(unexpected)}")
        for key, (want, got) in _shape_mismatch(model, state_dict).items():
            details.append(f"{key}: model has shape {want}, checkpoint {got}")
            break
        raise ConfigurationError(
            f"Checkpoint {path} does not fit the model ({'; '.join(details)}). "
            "Check the model name, --num-classes and --in-chans."
        )
    model.load_state_dict(state_dict, strict=True)


def _mismatch(model, state_dict: dict) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    return missing, unexpected


def _shape_mismatch(model, state_dict: dict) -> dict[str, tuple[tuple, tuple]]:
    own = model.state_dict()
    return {
        key: (tuple(own[key].shape), tuple(value.shape))
        for key, value in state_dict.items()
        if key in own and tuple(own[key].shape) != tuple(value.shape)
    }


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:4])
    return f"{shown} (+{len(keys) - 4} more)" if len(keys) > 4 else shown
