"""Side by side with PyTorch: the same models, inputs, batch and resolution.

  python bench/vs_torch.py                          # resnet101@448 csra H=1/H=8/gap, vit_b16@224 csra H=1
  python bench/vs_torch.py --models resnet101/csra8 --repeats 10
  python bench/vs_torch.py --dtype bfloat16          # ours in bf16 compute (f32 params) vs torch fp32
  python bench/vs_torch.py --memory                  # peak host RSS, resnet101@448 batch 16 train
  python bench/vs_torch.py --quick                   # smoke: resnet18@64 + a 2-block ViT, < 1 minute

Ours: the library's own jitted steps (`csra_jax.train.steps.make_train_step`: forward,
BCE-with-logits, backward, the paper's two-group SGD update, state donated; and
`make_eval_step`), compiled ahead of time. PyTorch: torchvision ResNet / timm ViT trunk
with a CSRA head written here from the paper's equations (per head: score =
conv1x1(x) / ||m_i||, base = mean_k score, att = sum_k softmax_k(T score) score or
max_k score for T = inf; heads summed), or GAP + fc for `gap`; train step = forward +
BCEWithLogits + backward + torch SGD (momentum 0.9, weight decay 1e-4, lr 0.01 backbone /
0.1 head); eval under `torch.inference_mode()`. `torch.set_num_threads(--threads)`
(default: all cores, as XLA's CPU backend uses). PyTorch runs both in the default
(NCHW-contiguous) and channels_last memory formats; the faster one is counted.

Processes: by default (`--processes separate`) ours and PyTorch each run in their own
worker process (`bench/vs_torch_worker.py`), as a user runs one of them: in one shared
process (`--processes one`) each framework's heap, threads and page faults slow the
other's steps. The parent starts neither framework; it drives the workers over pipes
and each worker times its own calls.

Timing: after compiling and `--warmup` untimed calls, each round calls ours and both
torch variants once, in rotating order, so load from other processes hits all alike
(with separate processes, only the called worker runs; the other waits on its pipe);
the table reports medians (img/s = batch / median step). Inputs and labels are the same
arrays for both. GFLOP/s use one FLOP count for both columns: XLA's `cost_analysis()`
of our compiled step (2 FLOPs per multiply-add; for train it includes the optimizer).
The peak is measured in the same run: the faster of a jitted 4096^3 f32 dot and
torch's 1x1 channels_last convolution of the same size (oneDNN), timed inside every
model's eval rounds (so it sees the same load; in one process also at the start); rows
use the highest seen so far.

`--calls_per_turn N` (N > 1) calls each fn N times per turn and times the median of all
but the first, each framework's back-to-back steady state as in a training loop. With one
call per turn the figure also holds what the previous call cost the next: on a virtual
machine whose free memory the host takes back (free page reporting), a step that maps
fresh memory (XLA:CPU's step buffers; see `csra_jax.host_heap`) page-faults more
expensively after the other framework's turn than after its own step.

Each row is printed as soon as it is measured, so a partial run still leaves a table.
`--compilation_cache DIR` reuses XLA executables across runs (a resnet101@448 train step
compiles in ~12 s on 2 cores, bf16 ~16 s).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import timing  # bench/timing.py (jax-free)
import vs_torch_worker as worker_lib

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = "resnet101/csra1,resnet101/csra8,resnet101/gap,vit_b16/csra1"
QUICK_MODELS = "resnet18/csra1,vit_tiny/csra1"
# Temperatures per head count (the paper's settings): the last head of H>1 is T=inf (max-pooling).
TEMPERATURES = {1: (1.0,), 2: (1.0, math.inf), 4: (1.0, 2.0, 4.0, math.inf),
                6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf),
                8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf)}
# timm names of our ViTs; "vit_tiny" is a 2-block, 192-wide ViT for the smoke test.
TIMM_VITS = {"vit_b16": "vit_base_patch16_224", "vit_l16": "vit_large_patch16_224"}
TINY_VIT = dict(embed_dim=192, depth=2, num_heads=3)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def csv_list(text):
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_spec(spec: str):
    """'resnet101/csra8' -> ('resnet101', 'csra', 8); 'resnet101/gap' -> (.., 'gap', 1)."""
    arch, _, head = spec.partition("/")
    head = head or "csra1"
    if head == "gap":
        return arch, "gap", 1
    if not head.startswith("csra") or not head[4:].isdigit():
        raise ValueError(f"bad model spec {spec!r}: expected ARCH/csraH or ARCH/gap")
    return arch, "csra", int(head[4:])


def default_size(arch: str) -> int:
    return 224 if arch.startswith("vit") and arch != "vit_l16" else 448


def default_batch(size: int) -> int:
    return 4 if size >= 448 else 8  # the anchor: batch 4 at 448, 8 at 224


def model_shape(spec: str, a):
    """(arch, head, num_heads, size, batch) of one model spec under the options ``a``."""
    arch, head, num_heads = parse_spec(spec)
    size = a.size or default_size(arch)
    return arch, head, num_heads, size, a.batch or default_batch(size)


# ------------------------------------------------------------------------ PyTorch side


def torch_setup(threads: int):
    import torch
    torch.set_num_threads(threads)
    return torch


def torch_model(arch: str, head: str, num_heads: int, size: int, num_classes: int,
                lam: float):
    """torchvision / timm trunk + a CSRA (or GAP + fc) head; returns (model, head_module)."""
    import torch
    import torch.nn as tnn

    class CSRA(tnn.Module):
        """Multi-head CSRA from the paper's equations; heads as in the official code."""

        def __init__(self, dim):
            super().__init__()
            self.temps = TEMPERATURES[num_heads]
            self.heads = tnn.ModuleList(tnn.Conv2d(dim, num_classes, 1, bias=False)
                                        for _ in self.temps)

        def forward(self, x):  # (B, d, h, w)
            logits = 0
            for conv, t in zip(self.heads, self.temps):
                norm = torch.norm(conv.weight, dim=1, keepdim=True).transpose(0, 1)
                score = (conv(x) / norm).flatten(2)           # (B, C, N)
                base_logit = score.mean(dim=2)
                if math.isinf(t):
                    att_logit = score.max(dim=2)[0]
                else:
                    att_logit = (torch.softmax(t * score, dim=2) * score).sum(dim=2)
                logits = logits + base_logit + lam * att_logit
            return logits

    class GAP(tnn.Module):
        def __init__(self, dim):
            super().__init__()
            self.fc = tnn.Linear(dim, num_classes)

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            if arch.startswith("resnet"):
                import torchvision
                r = getattr(torchvision.models, arch)(weights=None)
                self.trunk = tnn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1,
                                            r.layer2, r.layer3, r.layer4)
                dim, self.vit = r.fc.in_features, False
            else:
                import timm
                if arch == "vit_tiny":
                    from timm.models.vision_transformer import VisionTransformer
                    self.trunk = VisionTransformer(img_size=size, patch_size=16, num_classes=0,
                                                   **TINY_VIT)
                else:
                    self.trunk = timm.create_model(TIMM_VITS[arch], pretrained=False,
                                                   num_classes=0, img_size=size)
                dim, self.vit = self.trunk.embed_dim, True
            self.head = (CSRA if head == "csra" else GAP)(dim)

        def forward(self, x):
            if self.vit:  # patch tokens, prefix (class) token dropped, as the official code
                t = self.trunk.forward_features(x)[:, self.trunk.num_prefix_tokens:]
                g = int(round(t.shape[1] ** 0.5))
                x = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], g, g)
            else:
                x = self.trunk(x)
            return self.head(x)

    model = Net()
    return model, model.head


class TorchRunner:
    """Train / eval step of one torch model in one memory format, on fixed inputs."""

    def __init__(self, torch, model, head, images, labels, channels_last: bool):
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=fmt)
        self.x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))
                                  ).contiguous(memory_format=fmt)
        self.y = torch.from_numpy(labels.astype(np.float32))
        head_ids = {id(p) for p in head.parameters()}
        backbone = [p for p in model.parameters() if id(p) not in head_ids]
        self.opt = torch.optim.SGD([{"params": backbone, "lr": 0.01},
                                    {"params": list(head.parameters()), "lr": 0.1}],
                                   lr=0.01, momentum=0.9, weight_decay=1e-4)

    def train(self):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.binary_cross_entropy_with_logits(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def eval(self):
        self.model.eval()
        with self.torch.inference_mode():
            return self.model(self.x).sum().item()


class PeakFn:
    """A call of an n^3 f32 GEMM (``flops`` set), timed like the steps."""

    def __init__(self, fn, flops):
        self.fn, self.flops = fn, flops

    def __call__(self):
        return self.fn()


def torch_peak_fn(torch, n: int) -> PeakFn:
    """torch's 1x1 channels_last conv with n x n x n multiply-adds (oneDNN)."""
    side = int(round(n ** 0.5))
    conv = torch.nn.Conv2d(n, n, 1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(1, n, side, side).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            return conv(x).sum().item()
    return PeakFn(call, torch_peak_flops(n))


def torch_peak_flops(n: int) -> int:
    side = int(round(n ** 0.5))
    return 2 * n * side * side * n


def measure(fn: PeakFn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return fn.flops / statistics.median(ts) / 1e9


# ------------------------------------------------------------------------ our side


def ours_model(common, arch, head, num_heads, size, num_classes, lam, dtype, conv_impl):
    import csra_jax
    kw = {"conv_impl": conv_impl} if arch.startswith("resnet") and conv_impl else {}
    if arch == "vit_tiny":
        from csra_jax.models import vit as vit_lib
        from csra_jax.models.classifier import Classifier
        backbone = vit_lib.VisionTransformer(img_size=size, dtype=dtype, **TINY_VIT)
        head_mod = (csra_jax.CSRAHead(num_classes, num_heads=num_heads, lam=lam, dtype=dtype)
                    if head == "csra" else csra_jax.GAPHead(num_classes, dtype=dtype))
        return Classifier(backbone=backbone, head=head_mod)
    return csra_jax.create_model(arch, num_classes, head=head, num_heads=num_heads, lam=lam,
                                 img_size=size, dtype=dtype, **kw)


def jax_peak_fn(n: int) -> PeakFn:
    """A jitted n x n x n f32 dot."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(jnp.dot).lower(a, a).compile()
    return PeakFn(lambda: jax.block_until_ready(f(a, a)), jax_peak_flops(n))


def jax_peak_flops(n: int) -> int:
    return 2 * n ** 3


# ------------------------------------------------------------------------ the table


HEADER = ["model", "size", "batch", "ours dtype", "step", "ours img/s", "torch img/s",
          "torch format", "ours/torch", "ours GFLOP/s", "ours % peak", "torch GFLOP/s",
          "torch % peak", "GFLOP/step", "ours compile s", "spread ours / torch"]


def row(spec, size, batch, dtype, step, t_ours, t_torch, fmt, flops, peak, compile_s,
        sp_ours, sp_torch):
    gfs = lambda t: flops / t / 1e9 if flops else None
    f1 = lambda v: "-" if v is None else f"{v:.1f}"
    pct = lambda v: "-" if v is None or not peak else f"{100 * v / peak:.0f}%"
    return [spec, size, batch, dtype, step, f"{batch / t_ours:.2f}", f"{batch / t_torch:.2f}",
            fmt, f"{t_torch / t_ours:.2f}x", f1(gfs(t_ours)), pct(gfs(t_ours)),
            f1(gfs(t_torch)), pct(gfs(t_torch)), f1(flops and flops / 1e9), f"{compile_s:.1f}",
            f"{sp_ours} / {sp_torch}"]


def print_row(cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def report_step(spec, a, size, batch, step, times, flops, secs, peak_names, peak_seen):
    """Folds one step's interleaved times into the table: the peak GEMMs' rounds update
    ``peak_seen``, an A/B lever gets its paired ratio, the row is printed and returned."""
    for name in peak_names:
        if name in times:
            t = peak_names[name] / statistics.median(times.pop(name)) / 1e9
            peak_seen[name] = max(peak_seen.get(name, 0.0), t)
    peak = max(peak_seen.values()) if peak_seen else None
    med = {k: statistics.median(v) for k, v in times.items()}
    if "ours ab" in times:
        paired = statistics.median(b / o for b, o in zip(times["ours ab"], times["ours"]))
        print(f"# A/B {spec} {step}: conv_impl={a.ab_conv_impl} "
              f"{med['ours ab']:.3f}s vs {a.conv_impl or 'auto'} {med['ours']:.3f}s, "
              f"paired time ratio {paired:.3f} (< 1: the lever is faster)", flush=True)
        del times["ours ab"], med["ours ab"]
    log("  medians: " + ", ".join(f"{k} {v:.3f}s" for k, v in med.items()))
    best = min((k for k in med if k.startswith("torch ")), key=med.get)
    cells = row(spec, size, batch, a.dtype, step, med["ours"], med[best],
                best.split(" ", 1)[1], flops, peak, secs, timing.spread(times["ours"]),
                timing.spread(times[best]))
    print_row(cells)
    return cells


def use_compilation_cache(common, path):
    """Persistent XLA compilation cache (``--compilation_cache``); None: leave it off."""
    if path:
        common.jax.config.update("jax_compilation_cache_dir", path)
        common.jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def device_batch(common, mesh, images, labels):
    """The train/eval steps' batch dict, sharded over ``mesh``'s batch axis."""
    batch = images.shape[0]
    return common.jax.device_put(
        {"image": images, "labels": labels, "ignore": np.zeros_like(labels),
         "mask": np.ones((batch,), np.float32), "index": np.arange(batch, dtype=np.int32)},
        common.steps_lib.batch_sharding(mesh))


def ours_setup(common, a, arch, head, num_heads, size, images, labels):
    """Ours for one model: (mesh, model, variables, the --ab_conv_impl model or None,
    device batch)."""
    mesh = common.steps_lib.make_mesh()
    dtype = common.DTYPES[a.dtype]
    model = ours_model(common, arch, head, num_heads, size, a.num_classes, a.lam, dtype,
                       a.conv_impl)
    variables = common.init_variables(model, size)
    ab_model = (ours_model(common, arch, head, num_heads, size, a.num_classes, a.lam, dtype,
                           a.ab_conv_impl) if a.ab_conv_impl and arch.startswith("resnet")
                else None)
    return mesh, model, variables, ab_model, device_batch(common, mesh, images, labels)


def torch_runners(torch, a, arch, head, num_heads, size, images, labels):
    """PyTorch for one model: a TorchRunner per memory format in ``--formats``."""
    torch.manual_seed(0)
    runners = {}
    for fmt in a.formats:
        m, h = torch_model(arch, head, num_heads, size, a.num_classes, a.lam)
        runners[fmt] = TorchRunner(torch, m, h, images, labels, fmt == "channels_last")
    return runners


def run_model(spec, a, common, torch, peak_fns, peak_seen):
    """Both frameworks in this process."""
    arch, head, num_heads, size, batch = model_shape(spec, a)
    images, labels = worker_lib.inputs(batch, size, a.num_classes)
    log(f"{spec}@{size} batch {batch}: ours {a.dtype}, torch float32, {a.threads} threads, "
        "one process")
    mesh, model, variables, ab_model, data = ours_setup(common, a, arch, head, num_heads,
                                                        size, images, labels)
    runners = torch_runners(torch, a, arch, head, num_heads, size, images, labels)

    rows = []
    for step in ("eval", "train"):
        if step == "train" and a.no_train:
            continue
        build = common.build_train if step == "train" else common.build_eval
        ours, secs, flops = build(model, variables, mesh, data)
        log(f"  ours {step} compiled in {secs:.1f}s, {flops and flops / 1e9:.1f} GFLOP")
        fns = {"ours": ours}
        if ab_model is not None:
            fns["ours ab"], ab_secs, _ = build(
                ab_model, common.jax.tree.map(lambda v: v.copy(), variables), mesh, data)
            log(f"  ours {a.ab_conv_impl} {step} compiled in {ab_secs:.1f}s")
        fns.update({f"torch {fmt}": getattr(r, step) for fmt, r in runners.items()})
        if peak_fns and step == "eval":  # the peak GEMMs join the eval rounds: same load
            fns.update(peak_fns)
        reps = a.repeats if step == "train" else a.eval_repeats
        times = timing.interleaved(fns, reps, a.warmup, log,
                                   timer=timing.settled(common.timed, a.calls_per_turn))
        if step == "train" and int(ours.state.nonfinite):
            log("  warning: our train step reported non-finite values")
        rows.append(report_step(spec, a, size, batch, step, times, flops, secs,
                                {k: f.flops for k, f in peak_fns.items()}, peak_seen))
        del ours, fns
        gc.collect()
    return rows


def worker_argv(a, spec):
    """The options a worker needs to build the same model and inputs."""
    argv = ["--models", spec, "--threads", str(a.threads), "--dtype", a.dtype,
            "--formats", ",".join(a.formats), "--num_classes", str(a.num_classes),
            "--lam", str(a.lam), "--peak_size", str(a.peak_size)]
    for flag, value in (("--size", a.size), ("--batch", a.batch), ("--conv_impl", a.conv_impl),
                        ("--ab_conv_impl", a.ab_conv_impl),
                        ("--compilation_cache", a.compilation_cache)):
        if value:
            argv += [flag, str(value)]
    return argv + (["--no_peak"] if a.no_peak else [])


def run_model_separate(spec, a, peak_seen):
    """Ours and PyTorch each in its own worker process, rounds interleaved from here."""
    _, _, _, size, batch = model_shape(spec, a)
    log(f"{spec}@{size} batch {batch}: ours {a.dtype}, torch float32, {a.threads} threads, "
        "each framework in its own process")
    workers = {}
    try:
        for fw in ("ours", "torch"):  # one at a time: each builds and compiles alone
            workers[fw] = worker_lib.Worker(fw, worker_argv(a, spec))
            workers[fw].names()  # waits until the worker has built its models
        rows = []
        for step in ("eval", "train"):
            if step == "train" and a.no_train:
                continue
            secs, flops = (float(v) for v in workers["ours"].ask("build", step).split())
            log(f"  ours {step} compiled in {secs:.1f}s, {flops / 1e9:.1f} GFLOP")
            workers["torch"].ask("build", step)
            fns = {}
            for fw, w in workers.items():
                for i, name in enumerate(w.names()):
                    fns[name] = (w, i)
            reps = a.repeats if step == "train" else a.eval_repeats
            times = timing.interleaved(fns, reps, a.warmup, log, timer=timing.settled(
                lambda wn: wn[0].run(wn[1]), a.calls_per_turn))
            if step == "train" and int(workers["ours"].ask("nonfinite")):
                log("  warning: our train step reported non-finite values")
            peak_names = {} if a.no_peak else {"peak jax dot": jax_peak_flops(a.peak_size),
                                               "peak torch conv": torch_peak_flops(a.peak_size)}
            rows.append(report_step(spec, a, size, batch, step, times, flops or None, secs,
                                    peak_names, peak_seen))
        return rows
    finally:
        for w in workers.values():
            w.close()


# ------------------------------------------------------------------------ memory mode


def memory_child(a):
    """One framework, N train steps of the first model; prints its peak RSS (ru_maxrss)."""
    spec = csv_list(a.models)[0]
    arch, head, num_heads = parse_spec(spec)
    size, batch = a.size or default_size(arch), a.batch or 16
    images, labels = worker_lib.inputs(batch, size, a.num_classes)
    if a.child == "torch":
        torch = torch_setup(a.threads)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        m, h = torch_model(arch, head, num_heads, size, a.num_classes, a.lam)
        r = TorchRunner(torch, m, h, images, labels, a.formats[-1] == "channels_last")
        fn = r.train
        setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        import common  # noqa: F401  (imports jax, not torch)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mesh = common.steps_lib.make_mesh()
        model = ours_model(common, arch, head, num_heads, size, a.num_classes, a.lam,
                           common.DTYPES[a.dtype], a.conv_impl)
        variables = common.init_variables(model, size)
        data = device_batch(common, mesh, images, labels)
        del images
        runner, _, _ = common.build_train(model, variables, mesh, data)
        del variables
        try:  # XLA's own buffer plan of the compiled step (temp = activations + scratch)
            log(f"XLA temp {runner.compiled.memory_analysis().temp_size_in_bytes / 2 ** 30:.2f}"
                " GiB")
        except Exception:  # pylint: disable=broad-except
            pass
        fn = lambda: common.block(runner())
        setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # includes XLA compile
    ts = []
    for _ in range(a.memory_steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    assert "torch" not in sys.modules or a.child == "torch", "ours child imported torch"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"MEMORY {a.child} {peak} {base} {setup} {ts[-1] if ts else '-':.4}", flush=True)


def memory_mode(a):
    spec = csv_list(a.models)[0]
    arch, _, _ = parse_spec(spec)
    size, batch = a.size or default_size(arch), a.batch or 16
    print(f"# peak host memory (ru_maxrss) of {a.memory_steps} train steps, {spec}@{size} "
          f"batch {batch}; each framework in its own process (ours {a.dtype}, torch float32 "
          f"{a.formats[-1]}); 'before 1st step' includes our XLA compile")
    header = ["framework", "model", "batch", "peak RSS GiB", "peak before 1st step GiB",
              "after imports GiB", "last step s"]
    print("| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|",
          flush=True)
    children = [(c, a.conv_impl) for c in csv_list(a.memory_frameworks)]
    if a.ab_conv_impl:
        children.insert(1, ("ours", a.ab_conv_impl))
    for child, conv_impl in children:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", child, "--models", spec,
               "--size", str(size), "--batch", str(batch), "--dtype", a.dtype,
               "--threads", str(a.threads), "--memory_steps", str(a.memory_steps),
               "--formats", ",".join(a.formats), "--num_classes", str(a.num_classes)]
        if conv_impl:
            cmd += ["--conv_impl", conv_impl]
        out = subprocess.run(cmd, capture_output=True, text=True)
        temp = [l for l in out.stderr.splitlines() if l.startswith("XLA temp")]
        if temp:
            print(f"# {child} conv_impl={conv_impl or 'auto'}: {temp[-1]} (memory_analysis)")
        line = [l for l in out.stdout.splitlines() if l.startswith("MEMORY ")]
        if out.returncode or not line:
            log(out.stderr[-3000:])
            print(f"| {child} | {spec}@{size} | {batch} | failed (rc {out.returncode}) | - | - | - |")
            continue
        _, _, peak, base, setup, step_s = line[0].split()
        gib = lambda kb: f"{int(kb) / 2 ** 20:.2f}"  # ru_maxrss is in KiB on Linux
        name = child if child == "torch" or not conv_impl else f"{child} ({conv_impl})"
        print(f"| {name} | {spec}@{size} | {batch} | {gib(peak)} | {gib(setup)} | {gib(base)} "
              f"| {step_s} |", flush=True)


# ------------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", default=None,
                   help=f"comma-separated ARCH/csraH or ARCH/gap (default {DEFAULT_MODELS})")
    p.add_argument("--size", type=int, default=None,
                   help="image size for every model (default 448 ResNets, 224 vit_b16)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default 4 at 448, 8 at 224; 16 with --memory)")
    p.add_argument("--repeats", type=int, default=3, help="timed train rounds")
    p.add_argument("--eval_repeats", type=int, default=None,
                   help="timed eval rounds (default 2 x repeats)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds after compiling")
    p.add_argument("--calls_per_turn", type=int, default=1,
                   help="calls of each fn per round, timed as the median of all but the "
                        "first (bench/timing.py settled); 1: one call per turn")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="our compute dtype (params stay float32); torch is always float32")
    p.add_argument("--conv_impl", default=None, choices=["auto", "xla", "gemm", "gemm_vjp", "winograd"],
                   help="our ResNets' conv lowering (default: the library's, 'auto')")
    p.add_argument("--ab_conv_impl", default=None, choices=["xla", "gemm", "gemm_vjp", "winograd"],
                   help="A/B lever: also time ours with this conv_impl in the same "
                        "interleaved rounds (same weights); prints the paired ratio")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torch.set_num_threads (default: all cores, as XLA uses)")
    p.add_argument("--formats", default="default,channels_last",
                   help="torch memory formats to time (the faster is counted)")
    p.add_argument("--num_classes", type=int, default=80)
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--no_train", action="store_true", help="eval only")
    p.add_argument("--no_peak", action="store_true", help="skip the GEMM peak measurement")
    p.add_argument("--peak_size", type=int, default=4096, help="n of the n^3 peak GEMM")
    p.add_argument("--compilation_cache", default=None,
                   help="persistent XLA compilation cache directory (reruns skip compiles)")
    p.add_argument("--memory", action="store_true",
                   help="peak host memory of training (default resnet101/csra1@448 batch 16), "
                        "ours and torch each in its own subprocess")
    p.add_argument("--memory_steps", type=int, default=2,
                   help="with --memory: train steps per child (0: compile only, to read "
                        "XLA's buffer plan)")
    p.add_argument("--memory_frameworks", default="ours,torch",
                   help="with --memory: which children to run (ours and/or torch)")
    p.add_argument("--processes", default="separate", choices=["separate", "one"],
                   help="separate (default): ours and torch each in its own worker process, "
                        "rounds interleaved over pipes; one: both in this process, where "
                        "each framework's heap and threads slow the other's steps")
    p.add_argument("--child", choices=["ours", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: resnet18@64 and a 2-block ViT@64, batch 2, 1 round")
    a = p.parse_args(argv)
    if a.quick:
        a.models = a.models or QUICK_MODELS
        a.size, a.batch = a.size or 64, a.batch or 2
        a.repeats, a.peak_size = 1, min(a.peak_size, 1024)
    a.models = a.models or ("resnet101/csra1" if a.memory else DEFAULT_MODELS)
    a.eval_repeats = a.eval_repeats or 2 * a.repeats
    a.formats = csv_list(a.formats)
    bad = set(a.formats) - {"default", "channels_last"}
    if bad or not a.formats:
        p.error(f"--formats: default and/or channels_last, got {a.formats}")
    return a


def versions():
    """(jax, torch) versions without importing either (the separate mode's parent)."""
    from importlib import metadata
    return tuple(metadata.version(n) for n in ("jax", "torch"))


def main(argv=None):
    a = parse_args(argv)
    if a.worker:
        return worker_lib.serve(a, sys.modules[__name__])
    if a.child:
        return memory_child(a)
    if a.memory:
        return memory_mode(a)
    separate = a.processes == "separate"
    if separate:
        common = torch = None
        jax_version, torch_version = versions()
        machine = f"python {sys.version.split()[0]}, cpu cores {os.cpu_count()}"
    else:
        import common  # bench/common.py: sys.path for csra_jax, the library's steps
        torch = torch_setup(a.threads)
        use_compilation_cache(common, a.compilation_cache)
        jax_version, torch_version = common.jax.__version__, torch.__version__
        machine = common.describe_machine()
    log(machine + f"  torch {torch_version} ({a.threads} threads)")
    peak_fns, peak_seen, peak_note = {}, {}, "not measured"
    if not a.no_peak and separate:
        peak_note = (f"jitted {a.peak_size}^3 f32 dot (ours' worker) and torch 1x1 "
                     "channels_last conv of the same size (torch's worker), timed inside "
                     "every model's eval rounds; each row's % uses the highest so far")
    elif not a.no_peak:
        peak_fns = {"peak jax dot": jax_peak_fn(a.peak_size),
                    "peak torch conv": torch_peak_fn(torch, a.peak_size)}
        peak_seen = {k: measure(f, 3) for k, f in peak_fns.items()}
        peak_note = (f"{max(peak_seen.values()):.0f} GFLOP/s at start = max(jitted "
                     f"{a.peak_size}^3 f32 dot {peak_seen['peak jax dot']:.0f}, torch 1x1 "
                     f"channels_last conv {peak_seen['peak torch conv']:.0f}); both are re-timed "
                     "inside every model's eval rounds and each row's % uses the highest so far")
    where = ("each framework in its own process" if separate else "both frameworks in one process")
    print(f"# ours (csra_jax, jax {jax_version}) vs PyTorch {torch_version} ({machine}); {where}")
    print(f"# GEMM peak this run: {peak_note}")
    turn = ("" if a.calls_per_turn <= 1 else f" ({a.calls_per_turn} calls per turn, the "
            "median of all but the first)")
    print(f"# medians of {a.eval_repeats} eval / {a.repeats} train interleaved rounds{turn} "
          f"after {a.warmup} warm-up; torch {a.threads} threads, best of formats {a.formats}; "
          "ours/torch > 1 means ours is faster; GFLOP/s from XLA's FLOP count of our step "
          "for both columns; spread = (max - min) / median")
    print("| " + " | ".join(HEADER) + " |\n|" + "|".join("---" for _ in HEADER) + "|",
          flush=True)
    failed = []
    for spec in csv_list(a.models):
        try:
            if separate:
                run_model_separate(spec, a, peak_seen)
            else:
                run_model(spec, a, common, torch, peak_fns, peak_seen)
        except Exception as e:  # pylint: disable=broad-except
            log(f"{spec} failed: {type(e).__name__}: {e}")
            failed.append(spec)
        finally:
            gc.collect()
    if peak_seen:
        print("# GEMM peak, highest seen this run: " + ", ".join(
            f"{k} {v:.0f} GFLOP/s" for k, v in peak_seen.items()), flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
