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
from fertrt.metrics import summarize
from fertrt.runtime.preprocess import normalize, prepare_images

from .augment import AugmentConfig, augment_batch, random_erasing
from .checkpoint import read_checkpoint, save_checkpoint


@dataclass
class TrainConfig:
    model: str = "lnlattennet"
    data: str = "synth"
    out: str = "runs/train"
    epochs: int = 10
    minutes: float | None = None  # wall-clock budget; epochs are fitted to it after the first epoch
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
    device: str = "auto"
    amp: bool = True  # CUDA only
    channels_last: bool = True  # CUDA only
    resume: bool = False
    grey: bool = False
    model_kwargs: dict = field(default_factory=dict)
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


def _lr_lambda(state):
    def fn(step):
        warm, total = state["warmup_steps"], state["total_steps"]
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def train(cfg: TrainConfig, log=print) -> dict:
    from fertrt.train.data import load_data
    from fertrt.train.models import create_model, get_default_config

    rank, world, local_rank = _setup_distributed()
    is_main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device == "cuda" and local_rank is not None:
        device = f"cuda:{local_rank}"
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"

    default = get_default_config(cfg.model)  # unknown model -> clear error before any data work
    kwargs = dict(cfg.model_kwargs)
    if cfg.grey:
        kwargs["in_chans"] = 1
    resume_ckpt = None
    if cfg.resume:
        if not last_path.is_file():
            raise FertrtError(f"{last_path}: nothing to resume (no last.pt in {out})")
        resume_ckpt = read_checkpoint(last_path)
        if resume_ckpt["model_name"] != cfg.model:
            raise FertrtError(f"{last_path}: was trained as {resume_ckpt['model_name']!r}, not {cfg.model!r}")
        if resume_ckpt["data_spec"] != cfg.data:
            raise FertrtError(f"{last_path}: was trained on {resume_ckpt['data_spec']!r}, not {cfg.data!r}")
        kwargs = resume_ckpt.get("model_kwargs", kwargs)

    size = kwargs.get("input_size", default.preprocess.input_size)
    size = size if isinstance(size, int) else size[0]
    t_data = time.perf_counter()
    data = load_data(cfg.data, image_size=size, seed=cfg.seed, splits=("train", "val"))
    train_split, val_split = data.split("train"), data.split("val")
    if len(train_split) == 0:
        raise FertrtError(f"data {cfg.data!r}: the training split is empty")
    num_classes = len(data.class_names)
    if resume_ckpt and resume_ckpt["model_config"]["num_classes"] != num_classes:
        raise FertrtError(f"{last_path}: has {resume_ckpt['model_config']['num_classes']} classes but {cfg.data!r} has {num_classes}")
    if is_main:
        log(f"data {cfg.data}: {len(train_split)} train / {len(val_split)} val images, {num_classes} classes "
            f"(ready in {time.perf_counter() - t_data:.1f}s)")

    model = create_model(cfg.model, num_classes=num_classes, class_names=data.class_names, **kwargs)
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
    sched_state = {"warmup_steps": max(1, int(cfg.warmup_epochs * steps_per_epoch)), "total_steps": cfg.epochs * steps_per_epoch}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(sched_state))
    use_amp = cfg.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def criterion(logits, target):
        return F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)

    start_epoch, best_acc, history = 0, -1.0, []
    epochs = cfg.epochs
    if resume_ckpt:
        raw_model.load_state_dict(resume_ckpt["state_dict"])
        opt.load_state_dict(resume_ckpt["optimizer"])
        sched_state.update(resume_ckpt["schedule"])
        sched.load_state_dict(resume_ckpt["scheduler"])
        start_epoch, best_acc, history = resume_ckpt["epoch"] + 1, resume_ckpt["best_accuracy"], resume_ckpt["history"]
        epochs = resume_ckpt["schedule"]["epochs"]
        train_collate.rng = np.random.default_rng([cfg.seed, rank, start_epoch])
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
            "schedule": {**sched_state, "epochs": epochs}, "epoch": epoch, "best_accuracy": best_acc,
            "metrics": metrics, "history": history, "train_config": _jsonable(asdict(cfg)),
        }

    t_start = time.perf_counter()
    from tqdm import tqdm

    epoch = start_epoch
    while epoch < epochs:
        if sampler is not None:
            sampler.set_epoch(epoch)
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
            loss_sum += float(loss.detach()) * len(hard)
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
            improved = val["accuracy"] > best_acc
            best_acc = max(best_acc, val["accuracy"])
            ckpt = payload(epoch, metrics)
            save_checkpoint(last_path, ckpt)
            if improved:
                save_checkpoint(best_path, ckpt)
                _save_confusion(out / "confusion_val.png", val["confusion"], data.class_names, f"{cfg.model} val (epoch {epoch + 1})")
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            log(f"epoch {epoch + 1}/{epochs}: loss {metrics['train_loss']:.3f} train acc {metrics['train_accuracy']:.3f} "
                f"val acc {val['accuracy']:.3f} macro-F1 {val['macro_f1']:.3f} ({seen / train_time:.0f} img/s"
                f"{', best' if improved else ''})")
            if train_collate.dropped:
                log(f"  skipped {train_collate.dropped} unreadable images so far")
        if cfg.minutes and epoch == start_epoch and not cfg.resume:
            # Fit the number of epochs (and the cosine schedule) to the wall-clock budget.
            per_epoch = time.perf_counter() - t_start
            epochs = max(1, min(cfg.epochs if cfg.epochs else 10 ** 6, int(cfg.minutes * 60 // per_epoch)))
            sched_state["total_steps"] = epochs * steps_per_epoch
            if is_main:
                log(f"time budget {cfg.minutes:g} min: {per_epoch:.0f}s per epoch -> {epochs} epochs")
        epoch += 1
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"best_accuracy": best_acc, "epochs": epochs, "seconds": time.perf_counter() - t_start, "is_main": is_main,
            "best": str(best_path), "last": str(last_path), "history": history}


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _save_confusion(path, cm, class_names, title):
    from fertrt.train.plots import plot_confusion

    plot_confusion(path, np.asarray(cm), class_names, title)
