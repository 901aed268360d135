"""Backbone weights as other programs hold them: timm's and DINO's ViT key names, in a safetensors file or a
plain tensor state dict. Reading such a file never runs anything it brings: safetensors holds tensors only, and
a torch file is read with weights_only=True (compat.load_weights_only), which refuses any other object.

For a plain ViT, DINO's `vision_transformer.py` and timm's `VisionTransformer` use the same parameter names
(`cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
`norm.*`). What differs is what each may hold: timm has parameters DINO's ViT has no place for (layer scale,
register tokens, a pre-norm, ...), and DINO's training checkpoints wrap the backbone (`teacher`,
`module.backbone.*`) beside a projection head. The project's backbone is a timm ViT under `vit.` plus the [MASK]
token, which no other program reads and which an export leaves out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError

NAMINGS = ("timm", "dino")
"""Key-name conventions a backbone file can be written in or read from."""

CONTAINERS = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch", ".bin": "torch"}
"""File suffix -> how the tensors are stored: safetensors, or a torch state dict (torch.save of a dict)."""

DINO_KEY = re.compile(r"cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
                      r"|blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)")
"""Every parameter name of DINO's VisionTransformer without a classifier (vision_transformer.py, num_classes=0)."""

WRAPPERS = ("teacher", "state_dict", "model", "student")
"""Keys under which training checkpoints (DINO's, timm's train script, ...) hold the network, in preference order."""
PREFIXES = ("module.", "backbone.", "vit.")
"""Prefixes of a wrapped backbone's names (DDP, DINO's MultiCropWrapper, this project's MaskedViT)."""
LEFT_OUT = re.compile(r"(head|fc_norm)\..*|mask_token|masked_embed")
"""Not part of a backbone's features: classifiers and DINO heads, and [MASK] tokens (this project's, iBOT's)."""


class WeightsError(CheckpointError):
    """A weights file that cannot be read as the backbone asked for (one line saying why and what to do); a
    CheckpointError, so every front end that reports a bad checkpoint in one line reports it too."""


def container_of(path: str | Path) -> str:
    """'safetensors' or 'torch' from the file's suffix; WeightsError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise WeightsError(f"{path}: unknown weights file type '{suffix or '(none)'}'; name it "
                           f"{' or '.join(sorted(CONTAINERS))}")
    return CONTAINERS[suffix]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ writing


def backbone_state(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The project's backbone (a MaskedViT) as timm names: its timm ViT's tensors, without the [MASK] token."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in backbone.vit.state_dict().items()}


def to_naming(state: dict[str, torch.Tensor], naming: str) -> dict[str, torch.Tensor]:
    """A timm-named backbone state in `naming`; WeightsError for a parameter the target has no place for."""
    if naming not in NAMINGS:
        raise WeightsError(f"unknown naming '{naming}'; choose {' or '.join(NAMINGS)}")
    if naming == "dino":
        foreign = [k for k in state if not DINO_KEY.fullmatch(k)]
        if foreign:
            raise WeightsError(f"the backbone has parameters DINO's ViT has no place for ({', '.join(foreign[:3])}"
                               f"{' ...' if len(foreign) > 3 else ''}); export it with --format timm")
    return dict(state)


def encode(state: dict[str, torch.Tensor], container: str, metadata: dict[str, str]) -> bytes:
    """The bytes of a weights file: safetensors (with string metadata) or a plain torch state dict."""
    if container == "safetensors":
        from safetensors.torch import save

        return save(state, metadata=metadata)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ReadWeights:
    """A weights file read back: the backbone's tensors in timm names and where they came from."""

    state: dict[str, torch.Tensor]
    """Backbone tensors, names unwrapped (no `module.`, `backbone.`, `vit.` prefix), heads and [MASK] dropped."""
    container: str
    """safetensors or torch."""
    naming: str
    """timm or dino: the one given, else the file's own metadata (mst-export writes it), else dino for a torch
    file whose every name fits DINO's ViT, timm otherwise."""
    sha256: str
    """sha256 of the file's bytes (what `sha256sum FILE` prints)."""
    left_out: tuple[str, ...]
    """Names in the file that are not backbone parameters and were not loaded (heads, [MASK] tokens)."""


def _decode(path: Path, data: bytes, container: str) -> tuple[dict, dict[str, str]]:
    """(tensors or nested plain values, safetensors metadata) of the file's bytes; nothing in them is run."""
    if container == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            state = load(data)
            header_len = int.from_bytes(data[:8], "little")   # safetensors: u64 header size, JSON header
            metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        except (SafetensorError, ValueError, UnicodeDecodeError) as err:
            raise WeightsError(f"{path} is not a readable safetensors file ({str(err)[:100]}); "
                               "give a .safetensors file written by safetensors") from None
        return state, metadata
    from .compat import load_weights_only

    try:
        return load_weights_only(io.BytesIO(data)), {}
    except pickle.UnpicklingError:
        raise WeightsError(f"{path} holds more than tensors and plain values (a pickled object: refused "
                           "without running it); save the backbone's state dict alone, or as .safetensors") from None
    except Exception as err:  # noqa: BLE001 - torch reports damaged and foreign files as many types
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise WeightsError(f"{path} is not a readable torch file ({type(err).__name__}: {reason}); "
                           "give a state dict saved with torch.save, or a .safetensors file") from None


def _unwrap(path: Path, obj: object) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """(the flat name -> tensor dict of a backbone, out of a training checkpoint's wrappers and prefixes; the
    names left out: heads, [MASK] tokens)."""
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise WeightsError(f"{path} is not a backbone state dict (expected names mapped to tensors, at the top "
                           f"or under {'/'.join(WRAPPERS)}); export it with mst-export or save model.state_dict()")
    state, left_out = dict(obj), []
    for prefix in PREFIXES:
        left_out += [k for k in state if LEFT_OUT.fullmatch(k)]
        state = {k: v for k, v in state.items() if not LEFT_OUT.fullmatch(k)}
        inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        # a wrapped backbone beside other modules (DINO's MultiCropWrapper: backbone.* and head.*) is taken alone
        if inside and (len(inside) == len(state) or prefix == "backbone."):
            left_out += [k for k in state if not k.startswith(prefix)]
            state = inside
    left_out += [k for k in state if LEFT_OUT.fullmatch(k)]
    return {k: v for k, v in state.items() if not LEFT_OUT.fullmatch(k)}, tuple(sorted(left_out))


def read_weights(path: str | Path, naming: str = "auto") -> ReadWeights:
    """Read a backbone file (safetensors or torch state dict, timm or DINO names); WeightsError in one line."""
    path = Path(path)
    container = container_of(path)
    if naming not in ("auto", *NAMINGS):
        raise WeightsError(f"unknown naming '{naming}'; choose auto, {' or '.join(NAMINGS)}")
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; give the path of a backbone weights file")
    data = path.read_bytes()
    raw, metadata = _decode(path, data, container)
    state, left_out = _unwrap(path, raw)
    fits_dino = all(DINO_KEY.fullmatch(k) for k in state)
    if naming == "auto":
        # DINO publishes torch state dicts; safetensors files come from timm / the Hugging Face hub
        naming = (metadata["naming"] if metadata.get("naming") in NAMINGS
                  else "dino" if fits_dino and container == "torch" else "timm")
    if naming == "dino" and not fits_dino:
        odd = next(k for k in state if not DINO_KEY.fullmatch(k))
        raise WeightsError(f"{path}: '{odd}' is not a name of DINO's ViT; read it with --naming timm")
    return ReadWeights(state, container, naming, sha256_bytes(data), left_out)


def shape_of(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Width, depth, patch size and position grid of a ViT state dict (what the names and shapes tell)."""
    proj = state.get("patch_embed.proj.weight")
    pos = state.get("pos_embed")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if proj is None or proj.dim() != 4 or pos is None or pos.dim() != 3:
        return {"depth": depth}
    tokens = pos.shape[1] - (1 if "cls_token" in state else 0)
    grid = round(tokens ** 0.5)
    return {"width": int(proj.shape[0]), "depth": depth, "patch": int(proj.shape[-1]),
            "grid": grid if grid * grid == tokens else 0}


def _describe(shape: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in shape.items())


def build_from_weights(read: ReadWeights, arch: str, path: str | Path):
    """The project's backbone `arch` (frozen, eval mode) holding the read tensors, built at the file's patch size
    and position grid (other image sizes interpolate the positions, as in training); WeightsError naming the
    difference when the file is another architecture."""
    from .config import ModelConfig
    from .models import backbone_names, build_backbone

    if arch not in backbone_names():
        raise WeightsError(f"unknown --arch '{arch}'; choose one of {', '.join(backbone_names())}")
    shape = shape_of(read.state)
    if not shape.get("patch") or not shape.get("grid"):
        raise WeightsError(f"{path} is not a ViT backbone (no square pos_embed / patch_embed.proj.weight); "
                           "give a ViT's weights in timm or DINO naming")
    cfg = dataclasses.replace(ModelConfig(), arch=arch, patch_size=shape["patch"])
    backbone = build_backbone(cfg, img_size=shape["grid"] * shape["patch"], drop_path=0.0)
    expected = backbone_state(backbone)
    missing = [k for k in expected if k not in read.state]
    unexpected = [k for k in read.state if k not in expected]
    wrong = [k for k in expected if k in read.state and read.state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = shape_of(expected)
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                  else f"{wrong[0]} is {tuple(read.state[wrong[0]].shape)}, not {tuple(expected[wrong[0]].shape)}")
        raise WeightsError(f"{path} does not fit --arch {arch} ({detail}; the file: {_describe(shape)}; {arch}: "
                           f"{_describe(what)}); choose the --arch of the file's shape")
    backbone.vit.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in read.state.items()})
    return backbone.eval().requires_grad_(False)


@dataclass(frozen=True)
class WeightsFile:
    """A backbone file to evaluate in place of a pre-training folder (`mst-eval ... --weights FILE`).

    Stages take it where they take `pretrain_dir`: they load it through `mst.eval.stage.load_frozen` and their
    records carry `record_fields()`."""

    path: Path
    """The weights file (.safetensors, or a torch state dict .pth/.pt/.bin)."""
    arch: str
    """The registered backbone the file holds (mst.models.backbone_names())."""
    naming: str = "auto"
    """timm, dino, or auto (detected: see ReadWeights.naming)."""

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def read(self) -> ReadWeights:
        return read_weights(self.path, self.naming)

    def load(self) -> tuple[torch.nn.Module, ReadWeights]:
        """(frozen backbone, what was read); WeightsError in one line for a hostile or mismatched file."""
        read = self.read()
        return build_from_weights(read, self.arch, self.path), read

    def record_fields(self) -> dict:
        """What an evaluation record says about the weights it read (in place of the pre-training's folder)."""
        read = self.read()
        return {"pretrain_dir": None, "features_from": "weights file", "weights_file": str(self.path.resolve()),
                "weights_file_sha256": read.sha256, "weights_naming": read.naming,
                "weights_container": read.container, "weights_arch": self.arch,
                "weights_left_out": list(read.left_out)}
