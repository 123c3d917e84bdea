"""Run every stage of a recipe in order: optimise, evaluate, log, checkpoint, select, hand on.

A run directory holds the operative recipe, metrics (JSONL, CSV), the journal and the checkpoints
it commits (`last.pt`, `best.pt` link to them), the exported student and `summary.md`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kdlang import checkpoint_io
from kdlang.runtime import distributed, guards, precision, progress
from kdlang.runtime.metrics import MetricsLog, accuracy_counts
from kdlang.runtime.optim import build_optimizer, build_lr_lambda
from kdlang.runtime.options import RuntimeOptions
from kdlang.runtime.selection import Selection
from kdlang.runtime.policy import Policy
from kdlang.runtime.rundir import Identity, RunDirError, RunDirectory
from kdlang.runtime.guards import NonFiniteLoss  # noqa: F401 (run.py catches it from the trainer)

DATA_WAIT_SHARE = 0.2    # an epoch that waits for data this share of its training time is told so,
DATA_WAIT_SECONDS = 1.0  # once it waited this long: a sub-second wait is scheduling noise, not a loader


class Trainer:
    """Runs the stages into a run directory, committing after every epoch and every stage (see
    `rundir`); given an opened `rundir`, it continues from that directory's last commit."""

    def __init__(self, recipe, out: Path, *, device: str = "cpu", seed: int = 0, smoke: bool = False,
                 resume: bool = False, log=print, world: distributed.World = distributed.SINGLE,
                 rundir: RunDirectory | None = None):
        self.recipe = recipe
        self.out = Path(out)
        if rundir is None:
            identity = Identity.of(recipe, seed=seed, smoke=smoke)
            rundir = RunDirectory.resume(out, identity) if resume else RunDirectory.create(out, identity)
        self.rundir = rundir
        self.device = torch.device(device)
        self.seed = seed
        self.smoke = smoke
        self.world = world
        self.log = log if world.main else (lambda _: None)
        self.policy = Policy.from_recipe(recipe)
        self.options = RuntimeOptions.from_recipe(recipe)
        self.channels_last = self.options.use_channels_last(str(self.device))
        self.metrics = MetricsLog(self.out, writer=world.main)
        self.results: list[dict] = []
        self._hinted: set[str] = set()  # stages already told that they wait for data

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Every stage not yet committed; the results of all of them."""
        state = self.rundir.load_state()
        self.metrics.restore(self.rundir.journal.metrics_rows)
        if state is not None:
            self._check_committed(state)
            self.results = state["results"]
            self._restore_components(state["components"])
        for index, stage in enumerate(self.recipe.stages):
            if index < len(self.results):
                continue  # committed as done
            in_stage = state is not None and state["stage"] == stage and state["epoch"] is not None
            self.results.append(self.run_stage(stage, state if in_stage else None))
            self.rundir.commit({"stage": stage, "epoch": None, "results": self.results,
                                "components": self._component_states(None)}, keep_best=False, metrics=self.metrics)
        return self.results

    def _check_committed(self, state: dict) -> None:
        """A run continued by another recipe (`--force`) must share the stages and components it
        committed; anything else would mix two recipes' weights."""
        done = [result["stage"] for result in state["results"]] + ([state["stage"]] if state["epoch"] is not None else [])
        foreign = [name for name in state["components"] if name not in self.recipe.program.components]
        if done != self.recipe.stages[:len(done)] or foreign:
            what = f"the component `{foreign[0]}`" if foreign else f"the stages {', '.join(done)}"
            raise RunDirError(f"it committed {what}, which this recipe does not have in that order "
                              f"({', '.join(self.recipe.stages)}); start afresh with --out DIR")

    def run_stage(self, stage: str, resume_state=None) -> dict:
        from kdlang.runtime.data import Waited, stage_data

        torch.manual_seed(self.seed)
        data = stage_data(self.recipe, stage, seed=self.seed, world=self.world,
                          pin_memory=self.device.type == "cuda")
        self.recipe.num_data = data.num_train
        module = self.recipe.compile(stage, self.device)
        planned = self.recipe.program.stage(stage)
        if planned.evaluation_only:
            return self._evaluation_stage(stage, module, data)
        self._calibrate_random_models(module, data, stage)
        cache_bytes = module.cache_bytes(data.num_train)
        if self.options.caches_teacher(data.augmented, cache_bytes, str(self.device)) \
                and module.enable_cache(data.num_train):
            self.log(f"stage {stage}: caching the frozen side's outputs per sample "
                     f"({cache_bytes / 2**30:.2f} GiB; training data is not augmented)")
        elif not data.augmented and cache_bytes and self.options.cache_teacher == "auto":
            self.log(f"stage {stage}: not caching the frozen side ({cache_bytes / 2**30:.1f} GiB would not fit "
                     "in half the free memory); runtime(cache_teacher=true) insists")
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.options.compile:
            module.compile_models()
        if resume_state is None and not self.smoke:
            self._bf16_probe(module, planned, data, stage)
        scaler = self.options.scaler(str(self.device))
        runner = distributed.wrap(module, self.world, self.device)
        epochs = 1 if self.smoke else planned.epoch_count  # smoke: two batches a stage
        steps = min(2, len(data.train)) if self.smoke else len(data.train)
        params = module.trainable_parameters()
        optimizer = build_optimizer(planned, params)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(planned, epochs, steps))
        selection = Selection(self.policy.select_split, [h for h, _ in module.trained_heads], module.head_owners())
        clip = planned.grad_clip
        start_epoch = 0
        last_metrics = {}
        if resume_state is not None:
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            scaler.load_state_dict(resume_state["scaler"])
            _restore_losses(module, resume_state["losses"])
            selected = self.rundir.load_best()  # the journal resets it when a stage ends: this stage's
            selection.restore(resume_state["best"], selected["components"] if selected else None)
            last_metrics = resume_state.get("metrics", {})
            start_epoch = resume_state["epoch"] + 1
            torch.set_rng_state(resume_state["rng"])
        self.log(f"stage {stage}: {epochs} epoch(s), trains {', '.join(sorted(module.trained))}, "
                 f"losses {', '.join(module.loss_names.values())}")
        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            batches = Waited(data.train)
            train_losses = self._train_epoch(module, runner, optimizer, scheduler, scaler, data, batches, stage,
                                             epoch, epochs, steps, clip)
            training = time.perf_counter() - started
            evaluated = self._evaluate(module, data)
            evaluated.update(self._bf16_parity(module, data, stage, epoch))
            last_metrics = {**{f"train/{k}": v for k, v in train_losses.items()}, **evaluated}
            self.metrics.write(stage, epoch, {"lr": scheduler.get_last_lr()[0], **last_metrics,
                                              "seconds": round(time.perf_counter() - started, 3),
                                              "data_wait": round(batches.seconds / max(training, 1e-9), 3)})
            self._hint_data_wait(stage, batches.seconds, training)
            improved = selection.update(epoch, evaluated, lambda: self._component_states(module))
            self.log(progress.epoch_line(stage, epoch, epochs, train_losses, evaluated))
            self.rundir.commit({
                "stage": stage, "epoch": epoch, "results": self.results,
                "components": self._component_states(None), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "losses": _loss_states(module),
                "best": selection.state(), "metrics": last_metrics, "rng": torch.get_rng_state(),
            }, best={"stage": stage, "epoch": epoch, "components": selection.selected_states()} if improved else None,
                metrics=self.metrics)
        distributed.barrier(self.world)
        last = {k: v for k, v in last_metrics.items() if not k.startswith("train/")}
        best = selection.summary()
        if self.policy.select == "best" and selection.selected_any:
            self._restore_components(selection.selected_states())
        elif self.policy.select == "last":  # the last epoch's weights are what the stage hands on
            best = {"epoch": epochs - 1, "metrics": last, "epochs": {}}
        if selection.per_head and self.policy.select == "best":
            self.log(f"stage {stage}: each head keeps its own best epoch (they share no trained weights): "
                     + ", ".join(f"{h} {e + 1}" for h, e in best["epochs"].items() if e is not None))
        return {"stage": stage, "heads": [h for h, _ in module.heads], "best_epoch": best["epoch"],
                "best_epochs": best["epochs"], "best": best["metrics"], "last": last,
                "noise": self._noise_table(module, stage)}

    def _evaluation_stage(self, stage: str, module, data) -> dict:
        """A stage that only evaluates: one evaluation, recorded like a training stage's epochs (as
        epoch 0 in the metrics: nothing was trained), and no weights selected or saved."""
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.log(f"stage {stage}: evaluates {', '.join(h for h, _ in module.heads)}")
        started = time.perf_counter()
        evaluated = self._evaluate(module, data)
        self.metrics.write(stage, -1, {**evaluated, "seconds": round(time.perf_counter() - started, 3)})
        self.log(progress.evaluation_line(stage, evaluated))
        return {"stage": stage, "heads": [h for h, _ in module.heads], "best_epoch": None,
                "best": evaluated, "last": evaluated, "noise": self._noise_table(module, stage)}

    def _calibrate_random_models(self, module, data, stage: str) -> None:
        """A smoke run's models without their checkpoint get BatchNorm statistics from a few batches."""
        wanted = [name for name in module.order if name in self.recipe.uncalibrated and name not in module.trained]
        if not wanted:
            return
        batches = []
        for inputs, _labels, _index in data.train:
            batches.append(inputs.to(self.device))
            if len(batches) == 4:
                break
        calibrated = self.recipe.calibrate_batchnorm(wanted, batches)
        if calibrated:
            self.log(f"stage {stage}: BatchNorm statistics of {', '.join(calibrated)} (random weights, no checkpoint) "
                     f"taken from {len(batches)} training batches")

    def _noise_table(self, module, stage: str) -> dict:
        """Test top-1 of every head under Gaussian input noise of each strength the report names."""
        from kdlang.runtime.data import noisy_test

        table = {}
        for std in self.policy.noise:
            loader = noisy_test(self.recipe, stage, self.seed, std, self.world)
            accuracies = self._evaluate_loader(module, loader)
            for head, (top1, _) in accuracies.items():
                table.setdefault(head, {})[f"{std:g}"] = top1
            self.log(f"{stage} under noise std={std:g}: " +
                     " ".join(f"{h}={a[0]:.2f}" for h, a in accuracies.items()))
        return table

    # ---- one epoch ----------------------------------------------------------------------
    def _inputs(self, inputs):
        inputs = inputs.to(self.device, non_blocking=True)
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last and inputs.dim() == 4 else inputs

    def _bf16_parity(self, module, data, stage: str, epoch: int) -> dict:
        """CPU bf16 only: the trained head's top-1 in fp32 against bf16 on held-out batches; an
        epoch that lost more than `precision.TOLERANCE` points stops the run before its commit."""
        if not precision.watched(self.options.amp, str(self.device)):
            return {}
        parity = precision.measure(module, data.held_out, self.device, self.world, self.channels_last)
        if parity is None:
            return {}
        self.log(parity.line(stage, epoch))
        if parity.gap > precision.TOLERANCE:
            raise precision.refuse(parity, f"at stage {stage}, epoch {epoch + 1}",
                                   guards.Place(stage, epoch, 0, self.out).checkpoint())
        return {"bf16_gap": parity.gap}

    def _bf16_probe(self, module, planned, data, stage: str) -> None:
        """CPU bf16 only, before a stage trains: a short fp32 and bf16 run from the same weights."""
        if not precision.watched(self.options.amp, str(self.device)):
            return
        probe = precision.probe(module, planned, data.train, data.held_out, self.device, self.world,
                                self.channels_last)
        if probe is None:
            return
        self.log(probe.line(stage))
        if probe.parity.gap > precision.TOLERANCE:
            raise precision.refuse(probe.parity, f"in a {probe.steps}-step probe before stage {stage} trained",
                                   guards.Place(stage, 0, 0, self.out).checkpoint())

    def _hint_data_wait(self, stage: str, waited: float, training: float) -> None:
        """Say once per stage when the step waits for data a large share of the epoch, and long enough
        that more loader processes would save time a user notices."""
        if waited > max(DATA_WAIT_SHARE * training, DATA_WAIT_SECONDS) and stage not in self._hinted:
            self._hinted.add(stage)
            self.log(f"stage {stage}: {100 * waited / training:.0f}% of the epoch waited for data; "
                     f"data(..., workers=N) loads batches in N background processes")

    def _train_epoch(self, module, runner, optimizer, scheduler, scaler, data, batches, stage, epoch, epochs, steps,
                     clip=None) -> dict:
        module.train()
        data.set_epoch(epoch)
        guard = guards.EpochGuard(self.options, guards.stage_watch(module, self.options),
                                  guards.Place(stage, epoch, steps, self.out), warn=self.log)
        sums: dict = {}
        trained = 0
        bar = progress.Bar(f"{stage} {epoch + 1}/{epochs}", steps, every=self.options.log_every, log=self.log)
        for step, (inputs, labels, index) in enumerate(batches):
            if step >= steps:
                break
            module.time = epoch + step / steps
            inputs = self._inputs(inputs)
            labels, index = labels.to(self.device, non_blocking=True), index.to(self.device, non_blocking=True)
            with self.options.autocast(str(self.device)):
                _, losses = runner((inputs, labels, index))
            losses = {name: value.float() for name, value in losses.items()}
            total = sum(losses.values())
            terms, total_value = guards.read(losses, total)
            if guard.admit(*guards.agree(terms, total_value, self.world, self.device), step):
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if clip is not None:  # the stage's grad_clip: max L2 norm over everything it trains
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(module.trainable_parameters(), clip)
                scaler.step(optimizer)
                scaler.update()
                trained += 1
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value
            scheduler.step()  # also after a skipped batch: the schedule keeps to the step count
            bar.update({k: v / trained for k, v in sums.items()})
        bar.close()
        skipped = guard.report()
        if skipped:
            self.log(skipped)
        names = list(sums)
        totals = distributed.all_sum([sums[n] / max(1, trained) for n in names], self.world, self.device)
        means = {name: value / self.world.size for name, value in zip(names, totals)}
        return {**means, "skipped": guard.skipped} if self.options.skip_nonfinite else means

    def _evaluate(self, module, data) -> dict:
        out = {}
        for split, loader in (("val", data.val), ("test", data.test)):
            if loader is None:
                continue
            for head, (top1, top5) in self._evaluate_loader(module, loader).items():
                out[f"{split}/{head}/top1"] = top1
                out[f"{split}/{head}/top5"] = top5
        return out

    def _evaluate_loader(self, module, loader) -> dict:
        """head -> (top-1 %, top-5 %) over a loader, counts summed across ranks."""
        module.eval()
        counts: dict = {}
        for step, (inputs, labels, _) in enumerate(loader):
            if self.smoke and step >= 2:
                break
            with self.options.autocast(str(self.device)):
                heads = module.predict(self._inputs(inputs))
            for head, logits in heads.items():
                logits = logits.float()
                c = counts.setdefault(head, [0, 0, 0])
                top1, top5, n = accuracy_counts(logits, labels.to(self.device))
                c[0] += top1
                c[1] += top5
                c[2] += n
        for head in sorted(counts):
            counts[head] = distributed.all_sum(counts[head], self.world, self.device)
        return {head: (100.0 * top1 / max(n, 1), 100.0 * top5 / max(n, 1)) for head, (top1, top5, n) in counts.items()}

    # ---- state --------------------------------------------------------------------------
    def _component_states(self, module) -> dict:
        names = module.order if module is not None else self.recipe.built_components()
        return {name: _cpu_state(self.recipe.component(name)) for name in names}

    def _restore_components(self, states: dict) -> None:
        for name, state in states.items():
            checkpoint_io.load_into(self.recipe.component(name), state, self.rundir.folder / "last.pt")


def _cpu_state(module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _loss_states(module) -> dict:
    return {name: _cpu_state(loss) for name, loss in module.losses.items()}


def _restore_losses(module, states: dict) -> None:
    for name, state in states.items():
        module.losses[name].load_state_dict(state)
