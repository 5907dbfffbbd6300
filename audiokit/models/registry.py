"""Model recipes: the network, its exact front end and where its weights come from.

A recipe is cheap to build (no torch import, no weights read): the extractor and
`audiokit models list` use it to know a model's rate, dimension and windows, and whether its
weights are present. `recipe.load(...)` builds the runnable `EmbeddingModel` (done once per
worker, on the first file).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiokit.models.download import model_dir, sha256_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ModelError(Exception):
    """A model cannot be built: missing package or weights, a bad model card."""


def torch_available() -> bool:
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def torch_threads() -> int:
    """Intra-op threads for one worker: `$AUDIOKIT_TORCH_THREADS` (the local engine sets it to
    cores // workers), else every core this process may use."""
    configured = os.environ.get("AUDIOKIT_TORCH_THREADS")
    if configured:
        return max(1, int(configured))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class EmbeddingModel:
    """A loaded model: `run` takes a batch of windows of *units* (see `Recipe.stream_frontend`)."""

    name: str
    dim: int
    sample_rate: int
    run: object  # callable: windows [shape=(B, units, *unit_shape)] float32 → (B, dim) float32

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(windows), dtype=np.float32)


class Recipe:
    name: str
    description: str
    source: str
    licence: str
    dim: int
    sample_rate: int
    window_s: float
    hop_s: float
    min_window_s: float = 0.0
    unit_hop: int = 1  # samples per window unit (see `stream_frontend`)
    # Measured CPU seconds (one thread) per second of window, for the per-file time limit.
    cpu_s_per_window_s: float = 0.0
    # Pulled checkpoints: official URL and the pins a download must match.
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    filename: str | None = None

    def default_weights(self) -> Path | None:
        """The weights used without `weights=PATH`, or None where they are not installed."""
        if self.filename is None:
            return None
        path = model_dir() / self.filename
        return path if path.exists() else None

    def how_to_get(self) -> str:
        return f"run `audiokit models pull {self.name}` or pass --set embeddings.weights=PATH"

    def check(self, weights: str | None) -> None:
        """Raise ModelError (one line, saying how to fix it) if `load` cannot work here."""
        if not torch_available():
            raise ModelError(f"model {self.name} needs torch: pip install 'audiokit[torch]'")
        if weights is not None:
            if not Path(weights).is_file():
                raise ModelError(f"weights file not found: {weights}")
        elif self.default_weights() is None:
            where = model_dir() / self.filename if self.filename else "its package"
            raise ModelError(f"model {self.name} has no checkpoint at {where}: {self.how_to_get()}")

    def describe(self) -> dict:
        weights = self.default_weights()
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "licence": self.licence,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "weights_present": weights is not None,
            "weights": str(weights) if weights else None,
            "pull": self.url is not None,
        }

    def stream_frontend(self):
        """Windows are cut from a stream of *units*: this object's feature frames (`unit_hop`
        samples apart; `push(block)`, `finish(channels)`), or raw samples when it is None."""
        return None

    def load(self, *, weights: str | None, device: str, dtype: str) -> EmbeddingModel:
        raise NotImplementedError


def _torch_runner(net, device: str, dtype: str):
    """Wrap a torch module: numpy batch in, float32 numpy out, no autograd, eval mode."""
    import torch

    torch.set_num_threads(torch_threads())
    net = net.eval().to(device)
    if dtype == "float16":
        net = net.half()
    torch_dtype = torch.float16 if dtype == "float16" else torch.float32

    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(windows)).to(device=device, dtype=torch_dtype)
            return net(x).float().cpu().numpy()

    return run


def _read_state_dict(path: Path, pinned_sha256: str | None) -> dict:
    """Tensors only (`weights_only=True`). Official checkpoints that also pickle training state
    (numpy arrays) are fully unpickled only once their sha256 equals the pinned one."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if pinned_sha256 is None or sha256_of(path) != pinned_sha256:
            raise ModelError(
                f"{path} holds more than tensors and is not the pinned official checkpoint; "
                f"refusing to unpickle it ({type(exc).__name__})"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        for key in ("model", "model_state", "state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        return obj
    raise ModelError(f"{path} does not hold a state dict")


class GE2E(Recipe):
    name = "ge2e"
    description = "GE2E speaker encoder (Resemblyzer): 3-layer LSTM on 40 mel bands, 16 kHz"
    source = "pip package resemblyzer (pretrained.pt)"
    licence = "Apache-2.0"
    dim = 256
    sample_rate = 16000
    window_s = 1.6  # 160 frames: resemblyzer's partial utterance
    hop_s = 0.8
    min_window_s = 0.1
    cpu_s_per_window_s = 0.04
    unit_hop = 160  # 10 ms mel frames

    def default_weights(self) -> Path | None:
        # Found without importing resemblyzer (its import pulls webrtcvad and librosa).
        spec = importlib.util.find_spec("resemblyzer")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
        return path if path.exists() else None

    def how_to_get(self) -> str:
        return "pip install resemblyzer (its wheel ships the weights) or pass --set embeddings.weights=PATH"

    def load(self, *, weights: str | None, device: str, dtype: str) -> EmbeddingModel:
        from audiokit.models.networks import GE2ESpeakerEncoder

        path = Path(weights) if weights else self.default_weights()
        state = _read_state_dict(path, None)
        net = GE2ESpeakerEncoder()
        # The checkpoint also holds the GE2E loss's similarity scale and bias: not part of the encoder.
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})

        return EmbeddingModel(self.name, self.dim, self.sample_rate, _torch_runner(net, device, dtype))

    def stream_frontend(self):
        from audiokit.models.frontends import PowerMelStream

        return PowerMelStream(sr=16000, n_fft=400, hop_length=160, n_mels=40)


class PannsCnn14(Recipe):
    name = "cnn14"
    description = "PANNs CNN14 AudioSet tagger (mAP 0.431), fc1 embedding, 64-band log-mel, 32 kHz"
    source = "Zenodo 3987831 (Kong et al., PANNs)"
    licence = "CC-BY-4.0 (weights), MIT (code)"
    dim = 2048
    sample_rate = 32000
    window_s = 10.0  # the AudioSet clip length it was trained on
    hop_s = 10.0
    min_window_s = 1.0  # five 2×2 poolings need ≥ 32 frames
    cpu_s_per_window_s = 0.25
    url = "https://zenodo.org/records/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
    sha256 = "0dc499e40e9761ef5ea061ffc77697697f277f6a960894903df3ada000e34b31"
    size = 327_428_481
    filename = "Cnn14_mAP=0.431.pth"

    def load(self, *, weights: str | None, device: str, dtype: str) -> EmbeddingModel:
        from audiokit.models.frontends import LogMelClip
        from audiokit.models.networks import Cnn14

        path = Path(weights) if weights else self.default_weights()
        state = _read_state_dict(path, self.sha256)
        # The original computes its spectrogram inside the network (STFT as convolutions);
        # ours is the numpy front end, so those fixed buffers are not needed.
        state = {k: v for k, v in state.items() if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))}
        net = Cnn14()
        net.load_state_dict(state)
        logmel = LogMelClip(sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14000.0)
        network = _torch_runner(net, device, dtype)
        return EmbeddingModel(self.name, self.dim, self.sample_rate, lambda clips: network(logmel(clips)))


class UserModel(Recipe):
    """A model described by a TOML card next to an ONNX or TorchScript file.

    ```toml
    name = "my-encoder"
    file = "encoder.onnx"        # relative to the card; .onnx → onnxruntime, else TorchScript
    sample_rate = 16000
    dim = 128
    window_s = 1.0
    hop_s = 0.5
    input = "waveform"           # (B, samples) — or "logmel": (B, frames, n_mels)
    output = "embedding"         # ONNX output name (TorchScript: the forward's return value)
    licence = "…"                # optional

    [logmel]                     # only for input = "logmel"
    n_fft = 400
    hop_length = 160
    n_mels = 64
    fmin = 0.0
    fmax = 8000.0
    log_offset = 0.01            # optional: ln(mel + offset) instead of 10·log10(max(mel, 1e-10))
    ```
    """

    source = "user model card"
    licence = "see the model card"

    def __init__(self, card: str | os.PathLike):
        self.card = Path(card)
        try:
            data = tomllib.loads(self.card.read_text())
        except FileNotFoundError:
            raise ModelError(f"model card not found: {card}") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ModelError(f"cannot read model card {card}: {exc}") from None
        try:
            self.name = str(data.get("name", self.card.stem))
            self.file = (self.card.parent / data["file"]).resolve()
            self.sample_rate = int(data["sample_rate"])
            self.dim = int(data["dim"])
            self.window_s = float(data["window_s"])
            self.hop_s = float(data.get("hop_s", self.window_s))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card {card}: missing or bad field {exc}; need file, sample_rate, dim, window_s") from None
        self.input = data.get("input", "waveform")
        if self.input not in ("waveform", "logmel"):
            raise ModelError(f"model card {card}: input={self.input!r}; choose waveform or logmel")
        self.output = data.get("output")
        self.licence = str(data.get("licence", data.get("license", "see the model card")))
        self.logmel = dict(data.get("logmel", {}))
        self.description = str(data.get("description", f"user model {self.file.name}"))
        self.runtime = "onnx" if self.file.suffix.lower() == ".onnx" else "torchscript"
        if self.input == "logmel":
            self.min_window_s = self.logmel.get("n_fft", 400) / self.sample_rate

    def default_weights(self) -> Path | None:
        return self.file if self.file.exists() else None

    def how_to_get(self) -> str:
        return f"put the model file next to its card {self.card}"

    def check(self, weights: str | None) -> None:
        package = "onnxruntime" if self.runtime == "onnx" else "torch"
        if importlib.util.find_spec(package) is None:
            raise ModelError(f"model {self.name} ({self.file.name}) needs {package}: pip install {package}")
        if self.default_weights() is None:
            raise ModelError(f"model file {self.file} named by {self.card} does not exist")

    def _frontend(self):
        if self.input == "waveform":
            return lambda clips: clips
        from audiokit.models.frontends import LogMelClip

        lm = self.logmel
        return LogMelClip(
            sr=self.sample_rate,
            n_fft=int(lm.get("n_fft", 400)),
            hop_length=int(lm.get("hop_length", 160)),
            n_mels=int(lm.get("n_mels", 64)),
            fmin=float(lm.get("fmin", 0.0)),
            fmax=lm.get("fmax"),
            pad_mode=str(lm.get("pad_mode", "reflect")),
            log_offset=lm.get("log_offset"),
        )

    def load(self, *, weights: str | None, device: str, dtype: str) -> EmbeddingModel:
        frontend = self._frontend()
        if self.runtime == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch_threads()
            options.inter_op_num_threads = 1
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
            session = onnxruntime.InferenceSession(str(self.file), options, providers=providers)
            input_name = session.get_inputs()[0].name
            outputs = [self.output] if self.output else None

            def run(clips: np.ndarray) -> np.ndarray:
                x = frontend(clips).astype(np.float32, copy=False)
                return session.run(outputs, {input_name: x})[0]

            return EmbeddingModel(self.name, self.dim, self.sample_rate, run)

        import torch

        net = torch.jit.load(str(self.file), map_location="cpu")
        network = _torch_runner(net, device, dtype)
        return EmbeddingModel(self.name, self.dim, self.sample_rate, lambda clips: network(frontend(clips)))


BUILTIN: dict[str, Recipe] = {r.name: r for r in (GE2E(), PannsCnn14())}


def get_recipe(model: str) -> Recipe:
    """A built-in model by name, or a user model by the path of its TOML card."""
    if model in BUILTIN:
        return BUILTIN[model]
    if model.endswith(".toml"):
        return UserModel(model)
    raise ModelError(f"unknown model {model!r}; choose from: {', '.join(BUILTIN)}, or a model card PATH.toml")


def pull(name: str, *, on_progress=None) -> Path:
    """Download a built-in model's official checkpoint into the model dir (verified, atomic).

    `$AUDIOKIT_MODEL_MIRROR` (a base URL) fetches the same file from a local mirror instead;
    the pinned size and sha256 still apply.
    """
    from urllib.parse import quote

    from audiokit.models.download import fetch

    recipe = get_recipe(name)
    if recipe.url is None:
        present = recipe.default_weights()
        if present is not None:
            return present
        raise ModelError(f"model {name} is not downloaded by audiokit: {recipe.how_to_get()}")
    mirror = os.environ.get("AUDIOKIT_MODEL_MIRROR")
    url = f"{mirror.rstrip('/')}/{quote(recipe.filename)}" if mirror else recipe.url
    return fetch(url, model_dir() / recipe.filename, sha256=recipe.sha256, size=recipe.size, on_progress=on_progress)


__all__ = ["BUILTIN", "EmbeddingModel", "ModelError", "Recipe", "get_recipe", "pull", "torch_threads"]
