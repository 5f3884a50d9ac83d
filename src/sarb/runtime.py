"""Where and how a run computes: the device, bf16 autocast, seeding and the RNG state."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import sys
from typing import Any

import numpy as np
import torch

from sarb import distributed
from sarb.errors import SarbError


def pick_device(name: str, dist_info: distributed.DistInfo | None = None) -> torch.device:
    """``auto``: CUDA when available (this process's GPU under torchrun), else the CPU."""
    if name == "auto" and torch.cuda.is_available() and dist_info and dist_info.enabled:
        return torch.device("cuda", dist_info.local_rank)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SarbError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SarbError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SarbError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SarbError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def amp_enabled(amp: bool | None, device: torch.device) -> bool:
    """bf16 autocast: ``--amp``/``--no-amp``, or when unset on CUDA only."""
    return amp if amp is not None else device.type == "cuda"


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``, a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None, processes: int) -> int:
    """Intra-op threads for this process: ``requested`` (``--threads``), else torch's count when
    ``OMP_NUM_THREADS`` sets it, else this process's share of the cores (torchrun runs several
    processes per machine). A machine busy with other work gets a one-line warning: its
    oversubscribed cores make CPU training several times slower, and ``--threads`` fixes it."""
    if requested is not None:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    share = max(1, cpu_cores() // max(processes, 1))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cpu_cores() + 0.5:
        print(f"sarb: warning: this machine is busy (load {load:.1f} on {cpu_cores()} cores): "
              f"{share} threads may oversubscribe it; --threads N (e.g. 1) avoids that",
              file=sys.stderr)  # fmt: skip
    return share


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run computed, kept with its metrics. Two runs of one configuration give the same
    numbers only where these agree: the same package versions on two CPUs with other vector
    instructions, or another thread count, round differently and train other models."""
    import torchvision

    cpu = _cpu_info() if device.type == "cpu" else {}
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    else:
        processor = cpu.pop("model name", None) or platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": device.type,
        "processor": processor,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        **cpu,
    }


def _cpu_info() -> dict[str, str]:
    """From ``/proc/cpuinfo`` (Linux; empty elsewhere): the CPU's ``model name``, its
    ``cpu_model`` (family/model/stepping) and ``cpu_flags``, a digest of its instruction-set
    flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            first = f.read().split("\n\n", 1)[0]  # the first processor's block
    except OSError:
        return {}
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in first.splitlines())}
    out = {}
    if fields.get("model name"):
        out["model name"] = fields["model name"]
    if "cpu family" in fields:
        out["cpu_model"] = "family {} model {} stepping {}".format(
            fields["cpu family"], fields.get("model", "?"), fields.get("stepping", "?")
        )
    if fields.get("flags"):
        flags = " ".join(sorted(fields["flags"].split()))
        out["cpu_flags"] = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return out


def one_thread(worker_id: int) -> None:
    """``worker_init_fn`` of data loaders: a loader worker decodes with one thread."""
    torch.set_num_threads(1)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy's legacy RNG and torch; returns the generator of the data order."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (code that uses the legacy global RNG)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a training run draws from, as tensors and numbers (an exact resume
    reloads it with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "python": random.getstate(),
        "sampler": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        (np_state["name"], keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"])
    )
    random.setstate(state["python"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
