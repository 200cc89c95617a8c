"""`fertrt train`: one readable training loop (nanoGPT style), no framework.

Runs single-process on CPU by default; the same command under
`torchrun --nproc-per-node N fertrt train ...` uses DistributedDataParallel.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fertrt.errors import FertrtError
from fertrt.fileio import make_output_dir, output_lock, write_text_atomic
from fertrt.metrics import summarize
from fertrt.runtime.preprocess import normalize, prepare_images

from .augment import AugmentConfig, augment_batch, random_erasing
from .checkpoint import checkpoint_model_kwargs, read_checkpoint, save_checkpoint
from .commands import DEFAULT_THREADS

DEFAULT_EPOCHS = 10
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "confusion_val.png")  # what a training run writes into its folder


@dataclass
class TrainConfig:
    model: str = "lnlattennet"
    data: str = "synth"
    out: str = "runs/train"
    epochs: int | None = None  # None: 10 for a new run, the run's own count for --resume
    minutes: float | None = None  # wall-clock budget (over all resumes): machine- and load-dependent epochs
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balanced: bool = False
    clip_grad: float = 5.0
    seed: int = 0
    workers: int = 0
    threads: int = DEFAULT_THREADS  # intra-op threads (split between ranks under torchrun)
    device: str = "auto"
    amp: bool = True  # CUDA only
    channels_last: bool = True  # CUDA only
    resume: bool = False
    force: bool = False  # replace another run found in `out`
    grey: bool = False
    model_kwargs: dict = field(default_factory=dict)
    init: str | None = None  # fine-tuning: start from this fertrt checkpoint's weights (weights only)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# ------------------------------------------------------------------ data
class SplitDataset(torch.utils.data.Dataset):
    """Split -> (uint8 HxWx3 at the model's size or None, label or soft label, index)."""

    def __init__(self, split, pre):
        self.split, self.pre = split, pre

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        img = self.split.load(i)
        if img is not None:
            img = prepare_images([img], self.pre)[0]
        target = self.split.soft_labels[i] if self.split.soft_labels is not None else self.split.labels[i]
        return img, target, i


class Collate:
    """Drops unreadable samples, augments (train), and applies the runtime's normalisation."""

    def __init__(self, pre, augment: AugmentConfig | None, seed: int):
        self.pre, self.augment = pre, augment
        self.rng = np.random.default_rng(seed)
        self.dropped = 0

    def __call__(self, items):
        kept = [it for it in items if it[0] is not None]
        self.dropped += len(items) - len(kept)
        if not kept:
            return None
        imgs = np.stack([it[0] for it in kept])
        if self.augment is not None:
            imgs = augment_batch(imgs, self.rng, self.augment)
        x = normalize(imgs, self.pre)
        if self.augment is not None and self.augment.erasing > 0:
            x = random_erasing(x, self.rng, self.augment.erasing)
        target = torch.as_tensor(np.stack([it[1] for it in kept]))
        return torch.from_numpy(x), target, torch.as_tensor([it[2] for it in kept])


def make_loader(split, pre, batch_size, *, train, seed=0, workers=0, balanced=False, sampler=None, augment=None):
    ds = SplitDataset(split, pre)
    collate = Collate(pre, augment if train else None, seed)
    if sampler is None and train and balanced:
        counts = np.bincount(split.labels, minlength=len(split.class_names)).astype(np.float64)
        weights = 1.0 / np.maximum(counts[split.labels], 1)
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(split), generator=torch.Generator().manual_seed(seed))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=(train and sampler is None), sampler=sampler,
                                         num_workers=workers, collate_fn=collate, drop_last=False,
                                         generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)
    return loader, collate


# ------------------------------------------------------------------ evaluation helpers
@torch.no_grad()
def predict(model, split, pre, batch_size=128, device="cpu", aux=False):
    """Logits for a whole split (and, with aux, LNLAttenNet's region weights); unreadable samples dropped."""
    model.eval()
    loader, collate = make_loader(split, pre, batch_size, train=False)
    logits, indices, weights = [], [], []
    for batch in loader:
        if batch is None:
            continue
        x, _, idx = batch
        out = model(x.to(device), return_aux=True) if aux else model(x.to(device))
        if aux:
            logits.append(out["logits"].float().cpu())
            if "region_weights" in out:
                weights.append(out["region_weights"].float().cpu())
        else:
            logits.append(out.float().cpu())
        indices.append(idx)
    result = {"logits": torch.cat(logits).numpy(), "indices": torch.cat(indices).numpy(), "dropped": collate.dropped}
    if weights:
        result["region_weights"] = torch.cat(weights).numpy()
    return result


# ------------------------------------------------------------------ the loop
def _setup_distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return rank, world, local


def fit_epochs(epochs: int, done: int, per_epoch: float, seconds_left: float) -> int:
    """Epochs that fit a wall-clock budget: `done` so far at `per_epoch` seconds each, `seconds_left` of the
    budget, never more than `epochs` (so a refit only lowers the count) nor fewer than `done`."""
    return max(done, min(epochs, done + int(max(seconds_left, 0.0) // max(per_epoch, 1e-9))))


def seed_epoch(seed: int, rank: int, epoch: int, loader, collate) -> None:
    """Draw an epoch's order, augmentation and dropout from (seed, rank, epoch) alone, so that a run
    resumed at any epoch continues exactly as an uninterrupted one (with workers=0: loader processes keep
    their own copy of the augmentation generator)."""
    torch_seed, order_seed = np.random.SeedSequence([seed, rank, epoch]).generate_state(2)
    torch.manual_seed(int(torch_seed))
    collate.rng = np.random.default_rng([seed, rank, epoch])
    sampler_generator = getattr(loader.sampler, "generator", None)
    for generator in (loader.generator, sampler_generator):
        if generator is not None:
            generator.manual_seed(int(order_seed))


def _lr_lambda(state):
    def fn(step):
        warm, total = state["warmup_steps"], state["total_steps"]
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def _check_config(cfg: TrainConfig):
    """Range checks for callers that bypass the CLI's (the demo, tests, Python users)."""
    checks = [("--epochs", cfg.epochs is None or cfg.epochs >= 1, "an integer >= 1"),
              ("--minutes", cfg.minutes is None or (math.isfinite(cfg.minutes) and cfg.minutes > 0), "a number > 0"),
              ("--batch-size", cfg.batch_size >= 1, "an integer >= 1"),
              ("--lr", math.isfinite(cfg.lr) and cfg.lr > 0, "a finite number > 0"),
              ("--weight-decay", math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0, "a finite number >= 0"),
              ("--warmup-epochs", math.isfinite(cfg.warmup_epochs) and cfg.warmup_epochs >= 0, "a finite number >= 0"),
              ("--label-smoothing", 0 <= cfg.label_smoothing < 1, "a number in [0, 1)"),
              ("--clip-grad", math.isfinite(cfg.clip_grad) and cfg.clip_grad >= 0, "a finite number >= 0 (0 = off)"),
              ("--workers", cfg.workers >= 0, "an integer >= 0"),
              ("--threads", cfg.threads >= 1, "an integer >= 1")]
    for option, ok, expected in checks:
        if not ok:
            raise FertrtError(f"{option}: expected {expected}")
    if cfg.device not in ("auto", "cpu") and not cfg.device.startswith("cuda"):
        raise FertrtError(f"--device {cfg.device!r}: expected auto, cpu, cuda or cuda:N")
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FertrtError(f"--device {cfg.device}: PyTorch sees no CUDA device here "
                              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
        index = cfg.device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise FertrtError(f"--device {cfg.device}: expected cuda:N with N < {torch.cuda.device_count()} (the CUDA devices here)")


def _claim_folder(out: Path, cfg: TrainConfig, log):
    """A folder holding another run is continued only with --resume and replaced only with --force."""
    from fertrt.fileio import check_folder_outputs

    check_folder_outputs(out, RUN_FILES, overwrite=True)  # a device node or FIFO there: refused, --force or not
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found or cfg.resume:
        return
    if not cfg.force:
        raise FertrtError(f"-o {out}: holds another training run ({', '.join(found)}); pass --resume to continue it, "
                          "--force to replace it, or choose another folder")
    for name in found:
        (out / name).unlink()
    log(f"--force: removed the previous run's {', '.join(found)} from {out}")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train into cfg.out, holding a lock on that folder so that a second training into it is refused."""
    _check_config(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 owns the folder
        return _train(cfg, log)
    out = make_output_dir(cfg.out, "run folder")
    with output_lock(out, "training run"):
        _claim_folder(out, cfg, log)
        return _train(cfg, log)


def _train(cfg: TrainConfig, log=print) -> dict:
    from fertrt.train.data import load_data
    from fertrt.train.models import create_model, get_default_config

    rank, world, local_rank = _setup_distributed()
    is_main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device == "cuda" and local_rank is not None:
        device = f"cuda:{local_rank}"
    torch.set_num_threads(max(1, cfg.threads // world))
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"

    default = get_default_config(cfg.model)  # unknown model -> clear error before any data work
    kwargs = dict(cfg.model_kwargs)
    if cfg.grey:
        kwargs["in_chans"] = 1
    if not cfg.resume:
        try:  # unknown or ill-typed --model-arg -> clear error before any data work
            create_model(cfg.model, **kwargs)
        except (TypeError, ValueError) as exc:
            raise FertrtError(f"--model-arg {', '.join(f'{k}={v!r}' for k, v in cfg.model_kwargs.items())}: "
                              f"model {cfg.model!r} does not take it ({exc})") from exc
    resume_ckpt = None
    if cfg.resume:
        if not last_path.is_file():
            raise FertrtError(f"{last_path}: nothing to resume (no last.pt in {out})")
        resume_ckpt = read_checkpoint(last_path)
        if resume_ckpt["model_name"] != cfg.model:
            raise FertrtError(f"{last_path}: was trained as {resume_ckpt['model_name']!r}, not {cfg.model!r}")
        if resume_ckpt["data_spec"] != cfg.data:
            raise FertrtError(f"{last_path}: was trained on {resume_ckpt['data_spec']!r}, not {cfg.data!r}")
        kwargs = checkpoint_model_kwargs(resume_ckpt)

    size = kwargs.get("input_size", default.preprocess.input_size)
    size = size if isinstance(size, int) else size[0]
    t_data = time.perf_counter()
    data = load_data(cfg.data, image_size=size, seed=cfg.seed, splits=("train", "val"))
    if "train" not in data.splits or len(data.splits["train"]) == 0:
        raise FertrtError(f"data {cfg.data!r}: the training split is empty")
    present = [name for name, n in data.splits["train"].class_counts().items() if n]
    if len(present) < 2:  # one class: every prediction is right, and the model learns nothing
        raise FertrtError(f"data {cfg.data!r}: the training split holds only the class {', '.join(present) or '(none)'}; "
                          "training a classifier needs images of at least two classes")
    train_split, val_split, val_note = _train_val(data, cfg.seed)
    if val_note and is_main:
        log(val_note)
    num_classes = len(data.class_names)
    if resume_ckpt and resume_ckpt["model_config"]["num_classes"] != num_classes:
        raise FertrtError(f"{last_path}: has {resume_ckpt['model_config']['num_classes']} classes but {cfg.data!r} has {num_classes}")
    if is_main:
        log(f"data {cfg.data}: {len(train_split)} train / {len(val_split)} val images, {num_classes} classes "
            f"(ready in {time.perf_counter() - t_data:.1f}s)")

    model = create_model(cfg.model, num_classes=num_classes, class_names=data.class_names, **kwargs)
    if cfg.init and not resume_ckpt:  # a resumed run has its own weights already
        from .pretrained import load_init_weights

        load_init_weights(model, cfg.init, cfg.model, data.class_names, log if is_main else None)
    # saved with the run, so a later change of these defaults cannot change what this model computes
    kwargs = {**getattr(model, "design_kwargs", {}), **kwargs}
    pre = model.default_cfg.preprocess
    model.to(device)
    if device.startswith("cuda") and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.startswith("cuda") else None)

    sampler = None
    if world > 1:  # the sampler needs only the length
        sampler = torch.utils.data.distributed.DistributedSampler(range(len(train_split)), world, rank, seed=cfg.seed)
    train_loader, train_collate = make_loader(train_split, pre, cfg.batch_size, train=True, seed=cfg.seed + rank,
                                              workers=cfg.workers, balanced=cfg.balanced, sampler=sampler, augment=cfg.augment)
    decay = [p for n, p in raw_model.named_parameters() if p.ndim > 1 and "pos" not in n]
    no_decay = [p for n, p in raw_model.named_parameters() if not (p.ndim > 1 and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    else:
        raise FertrtError(f"--optimizer {cfg.optimizer!r}: expected adamw or sgd")
    steps_per_epoch = len(train_loader)
    epochs = cfg.epochs or DEFAULT_EPOCHS  # a resumed run without --epochs keeps its own (below)
    sched_state = {"warmup_steps": max(1, int(cfg.warmup_epochs * steps_per_epoch)), "total_steps": epochs * steps_per_epoch}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(sched_state))
    use_amp = cfg.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def criterion(logits, target):
        return F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)

    start_epoch, best_acc, history = 0, -1.0, []
    spent_before = 0.0  # training seconds of earlier sessions of this run (for --minutes)
    if resume_ckpt:
        try:
            raw_model.load_state_dict(resume_ckpt["state_dict"])
            opt.load_state_dict(resume_ckpt["optimizer"])
            sched_state.update({k: resume_ckpt["schedule"][k] for k in ("warmup_steps", "total_steps")})
            sched.load_state_dict(resume_ckpt["scheduler"])
            start_epoch, history = resume_ckpt["epoch"] + 1, resume_ckpt["history"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise FertrtError(f"{last_path}: cannot resume from it ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc
        best_acc = _best_on_disk(best_path, resume_ckpt)
        spent_before = float(resume_ckpt["schedule"].get("train_seconds", 0.0))
        epochs = cfg.epochs if cfg.epochs is not None else resume_ckpt["schedule"]["epochs"]
        if epochs <= start_epoch:
            raise FertrtError(f"--epochs {epochs}: the run in {out} has already done {start_epoch} epochs; "
                              f"pass --epochs above {start_epoch} to train further")
        if epochs != resume_ckpt["schedule"]["epochs"]:  # the cosine schedule ends at the new last epoch
            sched_state["total_steps"] = epochs * steps_per_epoch
        if is_main:
            log(f"resumed from {last_path} at epoch {start_epoch + 1}/{epochs}")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    def payload(epoch, metrics):
        return {
            "model_name": cfg.model, "model_kwargs": kwargs, "model_config": raw_model.default_cfg.to_dict(),
            "class_names": list(data.class_names), "preprocess": pre.to_dict(), "data_spec": cfg.data,
            "state_dict": {k: v.detach().cpu() for k, v in raw_model.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "schedule": {**sched_state, "epochs": epochs, "train_seconds": spent_before + time.perf_counter() - t_start},
            "epoch": epoch, "best_accuracy": best_acc,
            "metrics": metrics, "history": history, "train_config": _jsonable(asdict(cfg)),
        }

    t_start = time.perf_counter()
    from tqdm import tqdm

    epoch = start_epoch
    while epoch < epochs:
        if sampler is not None:
            sampler.set_epoch(epoch)
        seed_epoch(cfg.seed, rank, epoch, train_loader, train_collate)
        model.train()
        t_epoch = time.perf_counter()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=None if is_main else True, leave=False, dynamic_ncols=True)
        for batch in bar:
            if batch is None:
                continue
            x, target, _ = batch
            x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
            if device.startswith("cuda") and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                out_aux = model(x, return_aux=True)
                loss, parts = raw_model.joint_loss(out_aux, target, criterion)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FertrtError(f"epoch {epoch + 1}: the training loss became {loss_value} after {seen} images; training stopped "
                                  f"(the weights would be {loss_value} from here on). {_kept_note(out, epoch, start_epoch)} "
                                  f"Try a lower --lr (now {cfg.lr:g}) or a smaller --clip-grad (now {cfg.clip_grad:g})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.clip_grad)
            scaler.step(opt)
            scaler.update()
            sched.step()
            hard = target if target.dim() == 1 else target.argmax(1)
            correct += int((out_aux["logits"].argmax(1) == hard).sum())
            seen += len(hard)
            loss_sum += loss_value * len(hard)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        train_time = time.perf_counter() - t_epoch
        if is_main:
            pred = predict(raw_model, val_split, pre, device=device)
            labels = val_split.labels[pred["indices"]]
            val = summarize(labels, pred["logits"].argmax(1), data.class_names)
            metrics = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                       "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                       "val_per_class_accuracy": val["per_class_accuracy"], "lr": sched.get_last_lr()[0],
                       "epoch_seconds": train_time, "images_per_second": seen / train_time,
                       "skipped_images": train_collate.dropped + pred["dropped"]}
            history.append(metrics)
        if cfg.minutes:
            # Fit the number of epochs (and the cosine schedule) to what is left of the wall-clock budget;
            # before the checkpoint is written, so that a resumed run keeps the fitted count. Refitted after
            # every epoch from the mean epoch time so far, shrinking only: a machine that gets busier
            # later cuts epochs instead of running past the budget.
            elapsed = time.perf_counter() - t_start
            per_epoch = elapsed / (epoch + 1 - start_epoch)
            fitted = fit_epochs(epochs, epoch + 1, per_epoch, cfg.minutes * 60 - spent_before - elapsed)
            if world > 1:  # every rank must stop at the same epoch: the slowest rank's fit counts
                count = torch.tensor([fitted], device=device)
                torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MIN)
                fitted = int(count.item())
            if fitted != epochs:
                if is_main and epoch > start_epoch:
                    log(f"time budget {cfg.minutes:g} min: epochs now take {per_epoch:.0f}s on average -> {fitted} epochs "
                        f"instead of {epochs}")
                epochs = fitted
                sched_state["total_steps"] = epochs * steps_per_epoch
            if is_main and epoch == start_epoch:
                log(f"time budget {cfg.minutes:g} min ({spent_before / 60:.1f} min used before this session): "
                    f"{per_epoch:.0f}s per epoch -> {epochs} epochs")
        if is_main:
            improved = val["accuracy"] > best_acc
            best_acc = max(best_acc, val["accuracy"])
            ckpt = payload(epoch, metrics)
            if improved:  # best.pt first: last.pt never reports a best accuracy that best.pt does not hold
                save_checkpoint(best_path, ckpt)
                _save_confusion(out / "confusion_val.png", val["confusion"], data.class_names, f"{cfg.model} val (epoch {epoch + 1})")
            save_checkpoint(last_path, ckpt)
            # rewritten whole from the history last.pt holds, so the two always agree (even after a kill and --resume)
            write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            log(f"epoch {epoch + 1}/{epochs}: loss {metrics['train_loss']:.3f} train acc {metrics['train_accuracy']:.3f} "
                f"val acc {val['accuracy']:.3f} macro-F1 {val['macro_f1']:.3f} ({seen / train_time:.0f} img/s"
                f"{', best' if improved else ''}){_eta(t_start, epoch + 1 - start_epoch, epochs - epoch - 1)}")
            if train_collate.dropped:
                log(f"  skipped {train_collate.dropped} unreadable images so far")
        epoch += 1
    if world > 1:
        torch.distributed.destroy_process_group()
    if is_main:
        _warn_near_chance(best_acc, val_split.labels, num_classes, epochs, log)
    return {"best_accuracy": best_acc, "epochs": epochs, "seconds": time.perf_counter() - t_start, "is_main": is_main,
            "best": str(best_path), "last": str(last_path), "history": history}


def _eta(t_start: float, done: int, left: int) -> str:
    """', ETA 3.2 min' from the mean wall time of the epochs done in this session (validation included)."""
    if left <= 0 or done <= 0:
        return ""
    return f", ETA {(time.perf_counter() - t_start) / done * left / 60:.1f} min"


def chance_accuracy(labels, num_classes: int) -> float:
    """What a model that learned nothing scores: always the most frequent class (1/classes if balanced)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    return max(1.0 / max(num_classes, 1), float(counts.max()) / max(int(counts.sum()), 1))


def near_chance(accuracy: float, chance: float) -> bool:
    """Within a tenth of the way from chance to perfect: 22.9 % for 7 balanced classes, 55 % for 2."""
    return accuracy < chance + 0.1 * (1.0 - chance) or accuracy <= chance


def _warn_near_chance(best_acc: float, val_labels, num_classes: int, epochs: int, log) -> None:
    if len(val_labels) == 0:
        return
    labels = np.asarray(val_labels)
    labels = labels if labels.ndim == 1 else labels.argmax(1)
    chance = chance_accuracy(labels, num_classes)
    if near_chance(best_acc, chance):
        log(f"WARNING: the best validation accuracy {best_acc:.4f} is near chance ({chance:.4f}: always predicting "
            f"the most frequent of {num_classes} classes): this model has learned next to nothing. Likely causes: too "
            f"few epochs ({epochs}), a diverging loss (lower --lr), or data with one class or unreadable images")


def _train_val(data, seed: int):
    """(train, val, note). A data set without a val split (RAF-DB, AffectNet) must not select the best
    epoch on its test split: hold out a seeded 10% of train for that, and say so."""
    train_split = data.splits["train"]
    if "val" in data.splits:
        return train_split, data.splits["val"], None
    n = len(train_split)
    if n < 20:
        raise FertrtError(f"data {data.spec!r}: no val split and only {n} training images, too few to hold out a "
                          "validation set; the test split is never used for model selection")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10)
    val, train = train_split.subset(np.sort(order[:n_val])), train_split.subset(np.sort(order[n_val:]))
    val.name = "val"
    note = (f"data {data.spec}: no val split; holding out {n_val} of the {n} training images (10%, seed {seed}) "
            "to select the best epoch. The test split stays unseen until `fertrt eval`")
    return train, val, note


def _best_on_disk(best_path: Path, resume_ckpt: dict) -> float:
    """The best accuracy best.pt really holds (a kill between two saves must not leave a higher claim)."""
    if not best_path.is_file():
        return -1.0
    best = read_checkpoint(best_path)
    return float((best.get("metrics") or {}).get("val_accuracy", best.get("best_accuracy", -1.0)))


def _kept_note(out: Path, epoch: int, start_epoch: int) -> str:
    if epoch == 0:
        return "No checkpoint was written."
    return f"{out / 'last.pt'} and {out / 'best.pt'} keep the last finite epoch ({epoch})."


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _save_confusion(path, cm, class_names, title):
    from fertrt.train.plots import plot_confusion

    plot_confusion(path, np.asarray(cm), class_names, title)
