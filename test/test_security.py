"""Checkpoints and configs are data only; nothing read from a file or a topic reaches eval, pickle or a shell.

Behaviour first: pickles planted where weights are expected, a `torch.save` file beside a
checkpoint, YAML with python tags (in a config file and in `--set`), a feature file whose
extractor settings are not JSON, and instructions that look like code or shell commands are
refused or treated as text -- the planted payload (which would create a marker file) never
runs, and torch.load is never called while loading. Then a complement: an AST scan of
the package sources for eval/exec, pickle, shell=True, os.system, unsafe YAML and torch.load
without weights_only.
"""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from minivln_core.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("minivln_core", "minivln_ros")


class Payload:
    """Unpickling this creates `marker` (harmless, but proof that the pickle ran)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def no_unpickling(monkeypatch):
    """torch.load raises if anything calls it (the planted payloads show whether pickle ran at all)."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    from malformed_corpus import write_checkpoint

    return write_checkpoint(tmp_path / "ckpt")


def test_a_pickle_in_place_of_the_weights_is_refused_unread(checkpoint, tmp_path, no_unpickling) -> None:
    from minivln_core.models.checkpoint import from_pretrained

    marker = tmp_path / "ran"
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    info = json.loads((checkpoint / "config.json").read_text())
    info["weights_bytes"] = weights.stat().st_size  # only the safetensors parser stands in the way
    (checkpoint / "config.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="safetensors"):
        from_pretrained(checkpoint)
    assert not marker.exists()


def test_torch_save_files_beside_a_checkpoint_are_never_loaded(checkpoint, tmp_path, no_unpickling) -> None:
    from minivln_core.models.checkpoint import from_pretrained

    marker = tmp_path / "ran"
    for name in ("pytorch_model.bin", "model.pt", "optimizer.pt", "training_args.bin"):
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    from_pretrained(checkpoint)  # the safetensors weights load; the pickles are ignored
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(DataError, match="weight file is missing"):
        from_pretrained(checkpoint)
    assert not marker.exists()


def test_a_training_state_with_a_pickled_optimizer_is_not_unpickled(tmp_path, no_unpickling) -> None:
    from minivln_core.models import DuetPolicy, preset
    from minivln_core.train.state import OPTIM_NAME, TRAINER_NAME, load_training_state, save_training_state

    model = DuetPolicy(preset("tiny-student", image_feat_size=16))
    optimizer = torch.optim.AdamW(model.parameters())
    run = save_training_state(tmp_path / "last", model, optimizer, 3, {"best": None})
    marker = tmp_path / "ran"
    (run / OPTIM_NAME).write_bytes(pickle.dumps(Payload(marker)))
    record = json.loads((run / TRAINER_NAME).read_text())
    record["optimizer_bytes"] = (run / OPTIM_NAME).stat().st_size
    (run / TRAINER_NAME).write_text(json.dumps(record))
    with pytest.raises(Exception):  # safetensors refuses the header
        load_training_state(run, model, optimizer)
    assert not marker.exists()


def test_yaml_python_tags_are_refused_in_files_and_overrides(tmp_path, capsys) -> None:
    from minivln_core.cli import main
    from minivln_core.config import build_config
    from minivln_core.train.finetune import FinetuneConfig

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    for text in (f"world: !!python/object/apply:builtins.open ['{marker}', 'w']\n",
                 f"!!python/object/new:builtins.open ['{marker}', 'w']\n",
                 f"loop: !!python/object/apply:os.system ['touch {marker}']\n"):
        evil.write_text(text)
        with pytest.raises(ConfigError):
            build_config(FinetuneConfig, yaml_path=evil)
        assert main(["finetune", "--config", str(evil), "--out", str(tmp_path / "run")]) == 2
        assert "error" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        build_config(FinetuneConfig, overrides=[f"world=!!python/object/apply:builtins.open ['{marker}', 'w']"])
    assert not marker.exists()


def test_extractor_settings_in_a_feature_file_are_json_only(tmp_path, no_unpickling) -> None:
    from minivln_core.perception.config import load_extractor_config

    features = tmp_path / "views_vit.h5"
    marker = tmp_path / "ran"
    with h5py.File(features, "w") as f:
        f.attrs["extractor_config"] = f"!!python/object/apply:builtins.open ['{marker}', 'w']"
        f["s_a"] = np.zeros((36, 4), np.float32)
    with pytest.raises(DataError, match="not valid JSON"):
        load_extractor_config(tmp_path / "no_checkpoint_here", features)
    assert not marker.exists()


def test_instructions_that_look_like_code_are_only_text(checkpoint, tmp_path) -> None:
    from minivln_core.agent.online import OnlineNavigator
    from minivln_core.perception.config import load_extractor_config

    marker = tmp_path / "ran"
    navigator = OnlineNavigator.from_checkpoint(checkpoint, load_extractor_config(checkpoint), max_steps=2, threads=1)
    for text in (f"__import__('os').system('touch {marker}')", f"$(touch {marker}); `touch {marker}` | sh",
                 f"{{{{ open('{marker}', 'w') }}}} %s %n %x", "'; DROP TABLE episodes; --"):
        navigator.begin(text)
        assert navigator.instruction == text.strip() and navigator.active
        pano = np.zeros((24, 48, 3), np.uint8)
        navigator.decide(pano, np.zeros(3), 0.0, [np.array([1.0, 0.0, 0.0])])
    assert not marker.exists()


# -- a static complement: the package sources -------------------------------------------------------
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execl"), ("yaml", "load"),
                   ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"), ("yaml", "Loader"),
                   ("yaml", "UnsafeLoader"), ("yaml", "FullLoader")}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "cloudpickle", "joblib"}


def problems_in(source: str, name: str) -> list[str]:
    """Unsafe constructs in one Python source file."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_ATTRS or node.value.id in FORBIDDEN_MODULES:
                found.append(f"{where} uses {node.value.id}.{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        keywords = {k.arg: k.value for k in node.keywords}
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            found.append(f"{where} calls {func.id}()")
        if isinstance(keywords.get("shell"), ast.Constant) and keywords["shell"].value is True:
            found.append(f"{where} runs a shell (shell=True)")
        if isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name):
            if func.value.id == "torch":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{where} torch.load without weights_only=True")
            if func.value.id in ("np", "numpy"):
                allow = keywords.get("allow_pickle")
                if isinstance(allow, ast.Constant) and allow.value is True:
                    found.append(f"{where} np.load(allow_pickle=True)")
    return found


def test_the_scanner_finds_each_unsafe_construct() -> None:
    bad = ("import pickle\nfrom dill import loads\nx = eval('1')\nexec('y = 1')\nimport os\nos.system('ls')\n"
           "import subprocess\nsubprocess.run('ls', shell=True)\nimport yaml\nyaml.load('a', Loader=yaml.Loader)\n"
           "import torch\ntorch.load('m.pt')\nimport numpy as np\nnp.load('a.npy', allow_pickle=True)\n")
    found = " ".join(problems_in(bad, "bad.py"))
    for text in ("imports pickle", "imports dill", "calls eval", "calls exec", "os.system", "shell=True",
                 "yaml.load", "yaml.Loader", "torch.load", "allow_pickle"):
        assert text in found, text
    good = "model.eval()\nimport yaml\nyaml.safe_load('a')\nimport torch\ntorch.load('m', weights_only=True)\n"
    assert problems_in(good, "good.py") == []


def test_the_package_sources_use_no_eval_pickle_or_shell() -> None:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    assert len(files) > 30
    found = [problem for p in files for problem in problems_in(p.read_text(), str(p.relative_to(REPO)))]
    assert found == []
