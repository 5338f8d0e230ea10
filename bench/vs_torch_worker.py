"""One framework of `vs_torch.py` in its own process, driven over a pipe.

`vs_torch.py --processes separate` (the default) starts one worker for ours and one for
PyTorch per model, so neither framework's heap, threads or page faults touch the
other's steps, as when a user runs one of them. The parent interleaves the rounds as in
one process; each request runs one call in the worker, which times it there (the pipe
is not in the figure) and answers the seconds.

Protocol: one request per line on stdin, one answer per line on stdout, prefixed with
ANSWER (anything else a library prints to stdout is passed on to stderr):
  build eval|train -> "ANSWER compile_s flops" (ours; torch answers "ANSWER 0 0")
  names            -> "ANSWER [json list of the calls `build` made]"
  run I            -> "ANSWER seconds" of one call of the I-th name
  nonfinite        -> "ANSWER 0|1" (ours: the train state's non-finite flag)
  quit
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import timing  # bench/timing.py (jax-free)

ANSWER = "ANSWER"


def inputs(batch: int, size: int, num_classes: int):
    """The same images and labels in both workers (and in the one-process mode)."""
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    labels = (rng.random((batch, num_classes)) < 0.1).astype(np.int8)
    return images, labels


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, framework: str, argv):
        self.framework = framework
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "vs_torch.py"), "--worker", framework, *argv]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)  # stderr: the parent's

    def ask(self, *words):
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(ANSWER + " ") or line.strip() == ANSWER:
                return line[len(ANSWER):].strip()
            print(line, end="", file=sys.stderr)
        raise RuntimeError(f"the {self.framework} worker exited (rc {self.proc.wait()}) "
                           f"on {' '.join(words)!r}; its log is above")

    def names(self):
        """The calls the last ``build`` made, in the worker's order."""
        return json.loads(self.ask("names"))

    def run(self, index: int) -> float:
        return float(self.ask("run", str(index)))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _answer(*values):
    print(ANSWER, *values, flush=True)


def serve(a, vs):
    """The worker's loop; ``vs`` is the vs_torch module (models, runners, peak GEMMs)."""
    arch, head, num_heads, size, batch = vs.model_shape(vs.csv_list(a.models)[0], a)
    images, labels = inputs(batch, size, a.num_classes)
    fns, nonfinite = {}, lambda: 0
    if a.worker == "torch":
        torch = vs.torch_setup(a.threads)
        runners = vs.torch_runners(torch, a, arch, head, num_heads, size, images, labels)
        peak = None if a.no_peak else vs.torch_peak_fn(torch, a.peak_size)

        def build(step):
            fns.clear()
            fns.update({f"torch {fmt}": getattr(r, step) for fmt, r in runners.items()})
            if peak is not None and step == "eval":
                fns["peak torch conv"] = peak
            return 0.0, 0.0
    else:
        import common  # bench/common.py: jax, the library's steps, the heap setting
        vs.use_compilation_cache(common, a.compilation_cache)
        mesh, model, variables, ab_model, data = vs.ours_setup(
            common, a, arch, head, num_heads, size, images, labels)
        peak = None if a.no_peak else vs.jax_peak_fn(a.peak_size)

        def build(step):
            fns.clear()
            make = common.build_train if step == "train" else common.build_eval
            runner, secs, flops = make(model, variables, mesh, data)
            fns["ours"] = lambda: common.block(runner())
            if ab_model is not None:
                ab, _, _ = make(ab_model, common.jax.tree.map(lambda v: v.copy(), variables),
                                mesh, data)
                fns["ours ab"] = lambda: common.block(ab())
            if peak is not None and step == "eval":
                fns["peak jax dot"] = peak
            nonlocal nonfinite
            nonfinite = (lambda: int(runner.state.nonfinite)) if step == "train" else (lambda: 0)
            return secs, flops or 0.0
    other = "jax" if a.worker == "torch" else "torch"
    if other in sys.modules:  # the point of a worker: one framework per process
        raise SystemExit(f"vs_torch worker {a.worker}: {other} was imported here")
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "build":
            _answer(*build(words[1]))
        elif words[0] == "names":
            _answer(json.dumps(list(fns)))
        elif words[0] == "run":
            _answer(timing.wall(list(fns.values())[int(words[1])]))
        elif words[0] == "nonfinite":
            _answer(nonfinite())
        else:
            raise SystemExit(f"vs_torch worker: unknown request {line!r}")
