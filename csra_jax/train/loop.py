"""train / evaluate / train_and_evaluate / lambda_sweep, driven by one config.

The host loop only dispatches jitted steps and reads scalars every ``log_every_steps``
(and at checkpoints), so there is no device->host round-trip per step.
"""

from __future__ import annotations

import math
import os
import signal
import time

import jax
import ml_collections
import numpy as np

from csra_jax.data.iterator_state import WorkerCountRestore
from csra_jax.run.class_names import save_class_names
from csra_jax.run.paths import RunDir
from csra_jax.tasks import get_task
from csra_jax.train import disk_space
from csra_jax.train.data_setup import (eval_iterator, prepare_dataset, steps_per_epoch,
                                      train_iterator)
from csra_jax.train import evaluate as eval_lib
from csra_jax.train import resume_check
from csra_jax.run.checkpoints import Checkpoints
from csra_jax.config import validate_config
from csra_jax.train.metric_writer import MetricWriter
from csra_jax.train.multihost import is_main, lock_workdir, on_main_then_share
from csra_jax.train.optimizer import create_optimizer
from csra_jax.train.stall import StallDetector
from csra_jax.train.state import (abstract_train_state, create_train_state, model_from_config,
                                  state_variables)
from csra_jax.train.aot import compile_on_first_call
from csra_jax.train.steps import (make_eval_step, make_mesh, make_sweep_step, make_train_step,
                                  replicated)


class NonFiniteLossError(RuntimeError):
    pass


def _print(msg: str) -> None:
    if is_main():
        print(msg, flush=True)


def setup_compilation_cache(config) -> None:
    cache = os.path.expanduser(config.compilation_cache_dir)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


class _Preemption:
    """SIGTERM (TPU preemption, scancel, docker stop) -> save and exit at the next step."""

    def __init__(self):
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:  # multi-host: orbax's reached_preemption decides
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Experiment:
    """Everything one run needs, built once from the config."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        validate_config(config, jax.device_count(), jax.process_count())
        # Installed first: a preemption during start-up or compilation is honoured too.
        self.preemption = _Preemption()
        setup_compilation_cache(config)
        self.config = config
        self.run_dir = RunDir(workdir)  # a local path or gs://
        self.workdir = str(self.run_dir)
        disk_space.quiet_disk_full_logs()
        self.lock = lock_workdir(self.workdir)
        try:
            self._setup()
        except BaseException:
            self.lock.release()
            raise

    def _setup(self):
        config = self.config
        training = config.mode in ("train", "train_and_evaluate")

        def check_and_record():
            if self.run_dir.has_steps():  # a resume: the saved config must allow it
                accepted = resume_check.check_resume(self.workdir, config, training)
                if accepted:
                    _print(f"resuming with changed fields: {', '.join(accepted)}")
            # Lets predict / evaluate rebuild the model from the workdir alone; an
            # evaluation never replaces the record of the run it evaluates.
            if training or not self.run_dir.config.exists():
                resume_check.write_run_config(self.workdir, config)
        on_main_then_share(check_and_record, ValueError,
                            "process 0 refused to resume this workdir with this config")
        self.mesh = make_mesh()
        self.info = prepare_dataset(config)
        self.class_names = tuple(self.info.class_names)
        self.task = get_task(config.task)
        if is_main() and (training or not self.run_dir.class_names.exists()):
            save_class_names(self.workdir, self.class_names)  # predict needs no dataset
        self.model = model_from_config(config, len(self.class_names))
        accum = config.grad_accum_steps
        self.steps_per_epoch = steps_per_epoch(config, self.info)
        optim = dict(config.optim, num_epochs=config.num_epochs, grad_accum_steps=accum)
        self.tx, self.schedules = create_optimizer(
            optim, max(1, self.steps_per_epoch // accum))
        self.rng = jax.random.PRNGKey(config.seed)
        self.ckpts = Checkpoints(self.workdir, config.keep_checkpoints, self.task.best_key,
                                 on_damaged=config.on_damaged_checkpoint)
        self.writer = MetricWriter(self.workdir)
        self.eval_step = compile_on_first_call(make_eval_step(self.model, self.mesh))
        self.with_ids = True
        self.stall = StallDetector.from_config(config)

    # ----------------------------------------------------------------- state
    def abstract_state(self):
        return abstract_train_state(self.config, self.model, self.tx, self.rng)

    def fresh_state(self):
        state = create_train_state(self.config, self.model, self.tx, self.rng)
        return jax.device_put(state, replicated(self.mesh))

    def eval_variables(self):
        """Variables to evaluate: the workdir's best/latest checkpoint, else the config's
        pretrained weights (e.g. an official CSRA checkpoint)."""
        found = self.ckpts.restore_for_eval(self.abstract_state(), replicated(self.mesh))
        if found is not None:
            state, meta, where = found
            _print(f"evaluating {where}")
            return state_variables(state), int(meta.get("step", 0))
        if not self.config.init_checkpoint:
            raise FileNotFoundError(
                f"nothing to evaluate: no checkpoint in {self.workdir} and no "
                "config.init_checkpoint; train first or point init_checkpoint at weights.")
        _print(f"evaluating {self.config.init_checkpoint}")
        return state_variables(self.fresh_state()), 0

    # ------------------------------------------------------------ evaluation
    def evaluate(self, variables, step: int) -> dict:
        it = eval_iterator(self.config, self.info, self.mesh, with_ids=self.with_ids)
        start = time.time()
        results, ids = eval_lib.collect(self.eval_step, variables, it)
        ids = eval_lib.gather_ids(ids, self.workdir, f"eval{step}")
        if len(results["index"]) != it.num_examples:
            raise RuntimeError(f"evaluated {len(results['index'])} examples, the split has "
                               f"{it.num_examples}.")
        elapsed = time.time() - start
        if not is_main():
            return {}
        out_dir = self.run_dir.eval
        out_dir.mkdir(parents=True, exist_ok=True)
        eval_lib.save_predictions(self.run_dir.predictions(step), results, ids,
                                  self.class_names)
        if self.info.server_format and not results["labels"].any():
            where = eval_lib.SERVER_WRITERS[self.info.server_format](
                out_dir, results, ids, self.class_names)
            split = self.config.data.eval_split or self.info.eval_split
            _print(f"{self.info.name} {split} has no public labels; wrote evaluation-server "
                   f"files to {where}")
            return {}
        protocol = self.config.eval.protocol
        m = eval_lib.score(results, self.task, self.config.threshold, protocol)
        table = self.task.per_class_table(m, self.class_names)
        if table is not None:
            self.run_dir.ap_table(step).write_text(table + "\n")
            _print(f"{self.task.per_class_title} [{protocol} protocol]\n{table}")
        for note in self.task.notes(m):
            _print(f"note: {note}")
        _print(f"[eval step {step}] {len(results['index'])} images in {elapsed:.1f}s  "
               + eval_lib.summary_line(m, self.task))
        self.writer.write(step, {k: v for k, v in m.items() if np.isscalar(v)},
                          prefix=eval_lib.metric_prefix(protocol))
        return m

    def lambda_sweep(self) -> dict:
        variables, step = self.eval_variables()
        it = eval_iterator(self.config, self.info, self.mesh, with_ids=False)
        results, _ = eval_lib.collect(compile_on_first_call(make_sweep_step(self.model, self.mesh)),
                                      variables, it)
        sweep = eval_lib.lambda_sweep(results, self.config.lambda_sweep_lams,
                                      self.config.threshold, self.config.eval.protocol,
                                      self.task)
        _print("training-free lambda sweep (score = mean + lam * max):\n"
               + eval_lib.lambda_sweep_table(sweep))
        prefix = eval_lib.metric_prefix(self.config.eval.protocol).replace("eval/", "sweep/")
        key = self.task.best_key
        self.writer.write(step, {f"{prefix}{key}_lam{lam:g}": m[key]
                                 for lam, m in sweep["per_lam"].items()})
        return sweep

    # -------------------------------------------------------------- training
    def train(self, evaluate: bool = True) -> dict:
        config = self.config
        it = train_iterator(config, self.info, self.mesh)
        data_state = WorkerCountRestore(it, config.data.num_workers)
        restored = self.ckpts.restore_latest(self.abstract_state(), replicated(self.mesh),
                                             data_state)
        if restored is not None:
            state, meta = restored
            if data_state.converted_from is not None:
                _print(f"data position saved with data.num_workers={data_state.converted_from}"
                       f" carried over to {config.data.num_workers} (same batch order)")
            best = self.task.rating(meta, prefix="best_")
            best = -math.inf if best is None else best
            _print(f"resumed from step {int(meta['step'])} in {self.workdir}")
        else:
            state, best = self.fresh_state(), -math.inf
        # Compiled before it first runs, and the compiler's freed host memory released, so
        # the step's buffers do not peak on top of it (resnet101@448 b16 peak 9.9-10.2 ->
        # 9.2 GiB, bench/vs_torch.py --memory).
        train_step = compile_on_first_call(make_train_step(
            self.model, self.tx, self.mesh, self.schedules, self.task, config.grad_accum_steps))
        total = config.num_epochs * self.steps_per_epoch
        if config.max_steps > 0:
            total = min(total, config.max_steps)
        step = int(jax.device_get(state.step))
        if evaluate:
            best = self._rerate_interrupted_best(state, step, best)
        preempt = self.preemption
        last_metrics: dict = {}
        bar = None
        try:
            while step < total:
                epoch = step // self.steps_per_epoch
                epoch_end = min((epoch + 1) * self.steps_per_epoch, total)
                bar = _progress_bar(epoch, config.num_epochs, step - epoch * self.steps_per_epoch,
                                    self.steps_per_epoch)
                window_start, window_steps = time.time(), 0
                while step < epoch_end:
                    batch = next(it)
                    state, metrics = train_step(state, batch)
                    step += 1
                    window_steps += 1
                    if bar is not None:
                        bar.update(1)
                    if step % config.log_every_steps == 0 or step == epoch_end:
                        last_metrics = self._log(step, metrics, bar, window_start, window_steps)
                        self._check_stall(step, last_metrics, batch)
                        window_start, window_steps = time.time(), 0
                    stop = preempt.requested or self.ckpts.latest.reached_preemption(step)
                    if step % config.checkpoint_every_steps == 0 or stop:
                        self._save(step, state, it, best, metrics)
                    if stop:
                        self.ckpts.wait()
                        _print(f"preemption signal: saved step {step} and stopping; rerun the "
                               "same command to resume.")
                        return {"preempted": True, "step": step}
                if bar is not None:
                    bar.close()
                    bar = None
                epoch_done = step % self.steps_per_epoch == 0
                if evaluate and (step == total or (epoch_done and
                                                   (epoch + 1) % config.eval_every_epochs == 0)):
                    self._check_finite(step, metrics)
                    m = self.evaluate(state_variables(state), step)
                    key = self.task.best_key
                    if m and m.get(key, -math.inf) > best:
                        best = m[key]
                        self.ckpts.save_best(step, state, {key: best},
                                             {"step": step, "epoch": epoch + 1})
                    last_metrics.update(m)
                self._save(step, state, it, best, metrics)
        finally:
            if bar is not None:  # an error line then starts on a line of its own
                bar.close()
            self.ckpts.wait()
        return {"step": step, "best": best, **last_metrics, "state": state}

    def _rerate_interrupted_best(self, state, step: int, best: float) -> float:
        """A kill during a ``best/`` save lost that step's rating: evaluate it again (the
        resumed state, or its step in ``checkpoints/``) so ``best/`` holds the best step."""
        lost = [n for n in self.ckpts.interrupted_best if n <= step]
        if not lost:
            return best
        n = max(lost)
        if n == step:
            variables = state_variables(state)
        else:
            old = self.ckpts.restore_step(n, self.abstract_state(), replicated(self.mesh))
            if old is None:
                kept = self.ckpts.best.latest_step()
                _print(f"the best/ save of step {n} was interrupted and checkpoints/ no longer "
                       f"holds step {n}; best/ keeps " + (f"step {kept}" if kept is not None
                                                          else "nothing yet"))
                return self.ckpts.best_metric() if kept is not None else -math.inf
            variables = state_variables(old)
        _print(f"re-evaluating step {n}: its best/ save was interrupted")
        best = self.ckpts.best_metric()
        best = -math.inf if best is None else best
        m = self.evaluate(variables, n)
        key = self.task.best_key
        if m and m.get(key, -math.inf) > best:
            best = m[key]
            self.ckpts.save_best(n, state if n == step else old, {key: best},
                                 {"step": n, "epoch": n // self.steps_per_epoch})
        return best

    def _check_finite(self, step, metrics) -> None:
        if int(jax.device_get(metrics["nonfinite"])):
            raise NonFiniteLossError(
                f"non-finite loss or gradients at or before step {step}; the state was not "
                "updated by such steps and the last checkpoint is intact. Lower the learning "
                "rate, use float32, or check the input data.")

    def _log(self, step, metrics, bar, window_start, window_steps) -> dict:
        self._check_finite(step, metrics)
        host = jax.device_get(metrics)
        ips = window_steps * self.config.batch_size / max(time.time() - window_start, 1e-9)
        scalars = {"loss": float(host["loss"]), "aux_loss": float(host["aux_loss"]),
                   "images_per_s": ips,
                   **{k: float(v) for k, v in host.items() if k.startswith("lr_")}}
        if bar is not None:
            bar.set_postfix(loss=f"{scalars['loss']:.4f}",
                            lr=f"{scalars.get('lr_head', 0):.3g}", img_s=f"{ips:.1f}")
        self.writer.write(step, scalars, prefix="train/")
        return scalars

    def _check_stall(self, step, scalars, batch) -> None:
        warning = self.stall.observe_batch(step, scalars, batch)
        if warning:
            _print(warning)
            self.writer.write(step, {"stall": 1.0, **self.stall.last}, prefix="train/")

    def _save(self, step, state, it, best, metrics):
        self._check_finite(step, metrics)  # never checkpoint past a non-finite step
        if step in self.ckpts.latest.all_steps():
            return
        self.ckpts.save(step, state, it, {"step": step, f"best_{self.task.best_key}": best})

    def close(self):
        self.preemption.restore()
        try:
            self.ckpts.close()
            self.writer.close()
        finally:
            self.lock.release()


def _progress_bar(epoch, num_epochs, initial, total):
    if not is_main():
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{num_epochs}",
                unit="step", dynamic_ncols=True, leave=True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    try:
        exp = Experiment(config, workdir)
        try:
            if config.mode == "train":
                return exp.train(evaluate=False)
            if config.mode == "train_and_evaluate":
                return exp.train(evaluate=True)
            if config.mode == "evaluate":
                variables, step = exp.eval_variables()
                return exp.evaluate(variables, step)
            return exp.lambda_sweep()
        finally:
            exp.close()
    except Exception as e:  # pylint: disable=broad-except
        if disk_space.is_disk_full(e):
            raise disk_space.disk_full_error(e, str(RunDir(workdir)),
                                             config.keep_checkpoints) from None
        raise
