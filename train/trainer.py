"""`fertrt train`: one readable training loop (nanoGPT style), no framework.

Runs single-process on CPU by default; the same command under
`torchrun --nproc-per-node N fertrt train ...` uses DistributedDataParallel.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from fertrt.errors import FertrtError
from fertrt.fileio import make_output_dir, output_lock, write_text_atomic
from fertrt.metrics import summarize
from fertrt.ranges import TRAIN_DEFAULT_THREADS, TRAIN_OPTIMIZERS, TRAIN_RANGES, check_choice
from fertrt.runtime.preprocess import normalize, prepare_images

from .augment import AugmentConfig, augment_batch, random_erasing
from .checkpoint import checkpoint_model_kwargs, read_checkpoint, save_checkpoint

DEFAULT_EPOCHS = 10
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "confusion_val.png")  # what a training run writes into its folder


@dataclass(frozen=True)
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
    threads: int = TRAIN_DEFAULT_THREADS  # intra-op threads (split between ranks under torchrun)
    device: str = "auto"
    amp: bool = True  # CUDA only
    channels_last: bool = True  # CUDA only
    resume: bool = False
    force: bool = False  # replace another run found in `out`
    grey: bool = False
    model_kwargs: dict = field(default_factory=dict)
    init: str | None = None  # fine-tuning: start from this fertrt checkpoint's weights (weights only)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        """The one check of every value, whoever built the config: the CLI (whose argparse types are these same
        ranges, fertrt/ranges.py), the demo, tests, Python users. Whether a CUDA device is there is the
        machine's business, checked when training starts (train)."""
        for name, allowed in TRAIN_RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in _UNSET_MEANS_DEFAULT:
                allowed.check(value, train_option(name))
        check_choice(self.optimizer, TRAIN_OPTIMIZERS, "--optimizer")
        if not (isinstance(self.device, str) and _DEVICE_NAME.fullmatch(self.device)):
            raise FertrtError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        if not isinstance(self.model_kwargs, dict):
            raise FertrtError(f"--model-arg: expected KEY=VALUE arguments (a dict), got {self.model_kwargs!r}")
        for key in self.model_kwargs:
            if not (isinstance(key, str) and key.isidentifier()):
                raise FertrtError(f"--model-arg {key!r}: expected KEY=VALUE with KEY a constructor argument name")


_UNSET_MEANS_DEFAULT = ("epochs", "minutes")  # None: the default count (or the resumed run's), no time budget
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def train_option(name: str) -> str:
    """The `fertrt train` option of a TrainConfig field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


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
        sampler = torch.utils.data.WeightedRandomSampler(
            weights, len(split), generator=torch.Generator().manual_seed(seed)
        )
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=(train and sampler is None),
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,
    )
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


def _check_device_here(device: str) -> None:
    """A CUDA --device (its name is checked by TrainConfig) must be one this machine has."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise FertrtError(
            f"--device {device}: PyTorch sees no CUDA device here "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
            "use --device cpu"
        )
    index = device.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise FertrtError(
            f"--device {device}: expected cuda:N with N < {torch.cuda.device_count()} (the CUDA devices here)"
        )


def _claim_folder(out: Path, cfg: TrainConfig, log):
    """A folder holding another run is continued only with --resume and replaced only with --force."""
    from fertrt.fileio import check_folder_outputs

    check_folder_outputs(out, RUN_FILES, overwrite=True)  # a device node or FIFO there: refused, --force or not
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found or cfg.resume:
        return
    if not cfg.force:
        raise FertrtError(
            f"-o {out}: holds another training run ({', '.join(found)}); pass --resume to continue it, "
            "--force to replace it, or choose another folder"
        )
    for name in found:
        (out / name).unlink()
    log(f"--force: removed the previous run's {', '.join(found)} from {out}")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train into cfg.out, holding a lock on that folder so that a second training into it is refused."""
    _check_device_here(cfg.device)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 owns the folder
        return _train(cfg, log)
    out = make_output_dir(cfg.out, "run folder")
    with output_lock(out, "training run"):
        _claim_folder(out, cfg, log)
        return _train(cfg, log)


@dataclass
class _Session:
    """One training session (a new run, or a resumed one): what its epochs share. A --minutes budget refits
    `epochs` and sched_state["total_steps"] (which the learning-rate schedule reads) as the epochs go."""

    cfg: TrainConfig
    log: Callable  # rank 0 logs; the other ranks' log does nothing
    rank: int
    world: int
    device: str
    out: Path
    data: Any  # the DataSource (class names)
    train_split: Any
    val_split: Any
    model: torch.nn.Module  # what trains: the DistributedDataParallel wrapper under torchrun
    raw_model: torch.nn.Module  # what is saved and validated
    kwargs: dict  # the model's constructor arguments, saved with the run
    pre: Any  # the model's runtime preprocessing (PreprocessConfig)
    loader: Any
    collate: Collate
    sampler: Any  # DistributedSampler under torchrun, else None
    opt: torch.optim.Optimizer
    sched: Any
    sched_state: dict
    scaler: Any
    epochs: int
    start_epoch: int = 0
    best_acc: float = -1.0
    history: list = field(default_factory=list)
    spent_before: float = 0.0  # training seconds of earlier sessions of this run (for --minutes)
    t_start: float = 0.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_amp(self) -> bool:
        return self.cfg.amp and self.device.startswith("cuda")

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


def _train(cfg: TrainConfig, log=print) -> dict:
    s = _start_session(cfg, log)
    epoch = s.start_epoch
    while epoch < s.epochs:
        stats = _train_epoch(s, epoch)
        val, metrics = _validate(s, epoch, stats) if s.is_main else (None, None)
        if cfg.minutes:
            _fit_budget(s, epoch)
        if s.is_main:
            _save_epoch(s, epoch, val, metrics, stats)
        epoch += 1
    return _finish(s)


def _start_session(cfg: TrainConfig, log) -> _Session:
    """Seeds, device, data, model, loader, optimizer and schedule of a new run, or of a resumed one (its state
    loaded from last.pt). The order matters: the model's initial weights are drawn from the seeded generator."""
    rank, world, local_rank = _setup_distributed()
    log = log if rank == 0 else (lambda *a: None)
    torch.manual_seed(cfg.seed + rank)
    np.random.seed((cfg.seed + rank) % 2**32)  # 32-bit seeds only: the top seed on rank 1 wraps to 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device == "cuda" and local_rank is not None:
        device = f"cuda:{local_rank}"
    torch.set_num_threads(max(1, cfg.threads // world))
    out = Path(cfg.out)
    kwargs, resume_ckpt = _model_kwargs(cfg, out)
    data, train_split, val_split = _load_training_data(cfg, kwargs, resume_ckpt, out, log)
    raw_model, kwargs = _build_model(cfg, data, kwargs, resume_ckpt, device, log)
    model, sampler = raw_model, None
    if world > 1:  # the sampler needs only the length
        ids = [local_rank] if device.startswith("cuda") else None
        model = torch.nn.parallel.DistributedDataParallel(raw_model, device_ids=ids)
        sampler = torch.utils.data.distributed.DistributedSampler(range(len(train_split)), world, rank, seed=cfg.seed)
    pre = raw_model.default_cfg.preprocess
    loader, collate = make_loader(
        train_split,
        pre,
        cfg.batch_size,
        train=True,
        seed=cfg.seed + rank,
        workers=cfg.workers,
        balanced=cfg.balanced,
        sampler=sampler,
        augment=cfg.augment,
    )
    opt = _make_optimizer(cfg, raw_model)
    epochs = cfg.epochs or DEFAULT_EPOCHS  # a resumed run without --epochs keeps its own (_resume)
    sched_state = {"warmup_steps": max(1, int(cfg.warmup_epochs * len(loader))), "total_steps": epochs * len(loader)}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(sched_state))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.startswith("cuda"))
    s = _Session(
        cfg=cfg,
        log=log,
        rank=rank,
        world=world,
        device=device,
        out=out,
        data=data,
        train_split=train_split,
        val_split=val_split,
        model=model,
        raw_model=raw_model,
        kwargs=kwargs,
        pre=pre,
        loader=loader,
        collate=collate,
        sampler=sampler,
        opt=opt,
        sched=sched,
        sched_state=sched_state,
        scaler=scaler,
        epochs=epochs,
    )
    if resume_ckpt:
        _resume(s, resume_ckpt)
    if s.is_main:
        out.mkdir(parents=True, exist_ok=True)
    s.t_start = time.perf_counter()
    return s


def _model_kwargs(cfg: TrainConfig, out: Path):
    """(constructor arguments, the checkpoint to resume or None). Unknown models, model arguments the model does
    not take and a last.pt of another run are refused here, before any data work."""
    from fertrt.train.models import create_model, get_default_config

    get_default_config(cfg.model)  # unknown model -> clear error
    kwargs = dict(cfg.model_kwargs)
    if cfg.grey:
        kwargs["in_chans"] = 1
    if not cfg.resume:
        try:
            create_model(cfg.model, **kwargs)
        except (TypeError, ValueError) as exc:
            raise FertrtError(
                f"--model-arg {', '.join(f'{k}={v!r}' for k, v in cfg.model_kwargs.items())}: "
                f"model {cfg.model!r} does not take it ({exc})"
            ) from exc
        return kwargs, None
    last_path = out / "last.pt"
    if not last_path.is_file():
        raise FertrtError(f"{last_path}: nothing to resume (no last.pt in {out})")
    resume_ckpt = read_checkpoint(last_path)
    if resume_ckpt["model_name"] != cfg.model:
        raise FertrtError(f"{last_path}: was trained as {resume_ckpt['model_name']!r}, not {cfg.model!r}")
    if resume_ckpt["data_spec"] != cfg.data:
        raise FertrtError(f"{last_path}: was trained on {resume_ckpt['data_spec']!r}, not {cfg.data!r}")
    return checkpoint_model_kwargs(resume_ckpt), resume_ckpt


def _load_training_data(cfg: TrainConfig, kwargs: dict, resume_ckpt, out: Path, log):
    """(data, train split, val split) at the model's input size; refused when it cannot train a classifier."""
    from fertrt.train.data import load_data
    from fertrt.train.models import get_default_config

    size = kwargs.get("input_size", get_default_config(cfg.model).preprocess.input_size)
    size = size if isinstance(size, int) else size[0]
    t_data = time.perf_counter()
    data = load_data(cfg.data, image_size=size, seed=cfg.seed, splits=("train", "val"))
    if "train" not in data.splits or len(data.splits["train"]) == 0:
        raise FertrtError(f"data {cfg.data!r}: the training split is empty")
    present = [name for name, n in data.splits["train"].class_counts().items() if n]
    if len(present) < 2:  # one class: every prediction is right, and the model learns nothing
        raise FertrtError(
            f"data {cfg.data!r}: the training split holds only the class "
            f"{', '.join(present) or '(none)'}; training a classifier needs images of at least two "
            "classes"
        )
    train_split, val_split, val_note = _train_val(data, cfg.seed)
    if val_note:
        log(val_note)
    num_classes = len(data.class_names)
    if resume_ckpt and resume_ckpt["model_config"]["num_classes"] != num_classes:
        raise FertrtError(
            f"{out / 'last.pt'}: has {resume_ckpt['model_config']['num_classes']} classes but "
            f"{cfg.data!r} has {num_classes}"
        )
    log(
        f"data {cfg.data}: {len(train_split)} train / {len(val_split)} val images, {num_classes} classes "
        f"(ready in {time.perf_counter() - t_data:.1f}s)"
    )
    return data, train_split, val_split


def _build_model(cfg: TrainConfig, data, kwargs: dict, resume_ckpt, device: str, log):
    """(model on its device, its full constructor arguments); --init weights loaded for a new run."""
    from fertrt.train.models import create_model

    model = create_model(cfg.model, num_classes=len(data.class_names), class_names=data.class_names, **kwargs)
    if cfg.init and not resume_ckpt:  # a resumed run has its own weights already
        from .pretrained import load_init_weights

        load_init_weights(model, cfg.init, cfg.model, data.class_names, log)
    # saved with the run, so a later change of these defaults cannot change what this model computes
    kwargs = {**getattr(model, "design_kwargs", {}), **kwargs}
    model.to(device)
    if device.startswith("cuda") and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, kwargs


def _make_optimizer(cfg: TrainConfig, raw_model) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on biases, norms and position embeddings."""
    decay = [p for n, p in raw_model.named_parameters() if p.ndim > 1 and "pos" not in n]
    no_decay = [p for n, p in raw_model.named_parameters() if not (p.ndim > 1 and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)  # TrainConfig allows only these two


def _resume(s: _Session, ckpt: dict) -> None:
    """Weights, optimizer, schedule, history and spent time from last.pt; --epochs (if given) replaces the
    run's count and the cosine schedule then ends at the new last epoch."""
    try:
        s.raw_model.load_state_dict(ckpt["state_dict"])
        s.opt.load_state_dict(ckpt["optimizer"])
        s.sched_state.update({k: ckpt["schedule"][k] for k in ("warmup_steps", "total_steps")})
        s.sched.load_state_dict(ckpt["scheduler"])
        s.start_epoch, s.history = ckpt["epoch"] + 1, ckpt["history"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise FertrtError(
            f"{s.last_path}: cannot resume from it ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    s.best_acc = _best_on_disk(s.best_path, ckpt)
    s.spent_before = float(ckpt["schedule"].get("train_seconds", 0.0))
    s.epochs = s.cfg.epochs if s.cfg.epochs is not None else ckpt["schedule"]["epochs"]
    if s.epochs <= s.start_epoch:
        raise FertrtError(
            f"--epochs {s.epochs}: the run in {s.out} has already done {s.start_epoch} epochs; "
            f"pass --epochs above {s.start_epoch} to train further"
        )
    if s.epochs != ckpt["schedule"]["epochs"]:
        s.sched_state["total_steps"] = s.epochs * len(s.loader)
    s.log(f"resumed from {s.last_path} at epoch {s.start_epoch + 1}/{s.epochs}")


def _train_epoch(s: _Session, epoch: int) -> dict:
    """One pass over the training split -> {seen, correct, loss_sum, seconds}; a non-finite loss stops the run."""
    from tqdm import tqdm

    if s.sampler is not None:
        s.sampler.set_epoch(epoch)
    seed_epoch(s.cfg.seed, s.rank, epoch, s.loader, s.collate)
    s.model.train()
    t_epoch = time.perf_counter()
    stats = {"seen": 0, "correct": 0, "loss_sum": 0.0}
    bar = tqdm(
        s.loader,
        desc=f"epoch {epoch + 1}/{s.epochs}",
        disable=None if s.is_main else True,
        leave=False,
        dynamic_ncols=True,
    )
    for batch in bar:
        if batch is None:
            continue
        loss_value, correct, n = _train_step(s, batch, epoch, stats["seen"])
        stats["correct"] += correct
        stats["seen"] += n
        stats["loss_sum"] += loss_value * n
        bar.set_postfix(loss=f"{stats['loss_sum'] / stats['seen']:.3f}", acc=f"{stats['correct'] / stats['seen']:.3f}")
    stats["seconds"] = time.perf_counter() - t_epoch
    return stats


def _train_step(s: _Session, batch, epoch: int, seen: int):
    """One optimizer step on a batch -> (its loss, correct predictions, images)."""
    cfg = s.cfg
    x, target, _ = batch
    x, target = x.to(s.device, non_blocking=True), target.to(s.device, non_blocking=True)
    if s.device.startswith("cuda") and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def criterion(logits, target):
        return F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)

    with torch.autocast("cuda", dtype=torch.float16, enabled=s.use_amp):
        out_aux = s.model(x, return_aux=True)
        loss, _ = s.raw_model.joint_loss(out_aux, target, criterion)
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise FertrtError(
            f"epoch {epoch + 1}: the training loss became {loss_value} after {seen} images; training "
            f"stopped (the weights would be {loss_value} from here on). "
            f"{_kept_note(s.out, epoch, s.start_epoch)} "
            f"Try a lower --lr (now {cfg.lr:g}) or a smaller --clip-grad (now {cfg.clip_grad:g})"
        )
    s.opt.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    if cfg.clip_grad:
        s.scaler.unscale_(s.opt)
        torch.nn.utils.clip_grad_norm_(s.raw_model.parameters(), cfg.clip_grad)
    s.scaler.step(s.opt)
    s.scaler.update()
    s.sched.step()
    hard = target if target.dim() == 1 else target.argmax(1)
    return loss_value, int((out_aux["logits"].argmax(1) == hard).sum()), len(hard)


def _validate(s: _Session, epoch: int, stats: dict):
    """(val summary, the epoch's metrics), the metrics appended to the run's history. Rank 0 only."""
    pred = predict(s.raw_model, s.val_split, s.pre, device=s.device)
    labels = s.val_split.labels[pred["indices"]]
    val = summarize(labels, pred["logits"].argmax(1), s.data.class_names)
    seen, seconds = stats["seen"], stats["seconds"]
    metrics = {
        "epoch": epoch + 1,
        "train_loss": stats["loss_sum"] / max(seen, 1),
        "train_accuracy": stats["correct"] / max(seen, 1),
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "val_per_class_accuracy": val["per_class_accuracy"],
        "lr": s.sched.get_last_lr()[0],
        "epoch_seconds": seconds,
        "images_per_second": seen / seconds,
        "skipped_images": s.collate.dropped + pred["dropped"],
    }
    s.history.append(metrics)
    return val, metrics


def _fit_budget(s: _Session, epoch: int) -> None:
    """Fit the number of epochs (and the cosine schedule) to what is left of the --minutes budget; before the
    checkpoint is written, so that a resumed run keeps the fitted count. Refitted after every epoch from the
    mean epoch time so far, shrinking only: a machine that gets busier later cuts epochs instead of running
    past the budget."""
    minutes = s.cfg.minutes
    elapsed = time.perf_counter() - s.t_start
    per_epoch = elapsed / (epoch + 1 - s.start_epoch)
    fitted = fit_epochs(s.epochs, epoch + 1, per_epoch, minutes * 60 - s.spent_before - elapsed)
    if s.world > 1:  # every rank must stop at the same epoch: the slowest rank's fit counts
        count = torch.tensor([fitted], device=s.device)
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MIN)
        fitted = int(count.item())
    if fitted != s.epochs:
        if epoch > s.start_epoch:
            s.log(
                f"time budget {minutes:g} min: epochs now take {per_epoch:.0f}s on average -> {fitted} epochs "
                f"instead of {s.epochs}"
            )
        s.epochs = fitted
        s.sched_state["total_steps"] = s.epochs * len(s.loader)
    if epoch == s.start_epoch:
        s.log(
            f"time budget {minutes:g} min ({s.spent_before / 60:.1f} min used before this session): "
            f"{per_epoch:.0f}s per epoch -> {s.epochs} epochs"
        )


def _save_epoch(s: _Session, epoch: int, val: dict, metrics: dict, stats: dict) -> None:
    """best.pt (when val accuracy improved), last.pt, metrics.jsonl and the epoch's log line. Rank 0 only."""
    improved = val["accuracy"] > s.best_acc
    s.best_acc = max(s.best_acc, val["accuracy"])
    ckpt = _payload(s, epoch, metrics)
    if improved:  # best.pt first: last.pt never reports a best accuracy that best.pt does not hold
        save_checkpoint(s.best_path, ckpt)
        _save_confusion(
            s.out / "confusion_val.png", val["confusion"], s.data.class_names, f"{s.cfg.model} val (epoch {epoch + 1})"
        )
    save_checkpoint(s.last_path, ckpt)
    # rewritten whole from the history last.pt holds, so the two always agree (even after a kill and --resume)
    write_text_atomic(s.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in s.history))
    s.log(
        f"epoch {epoch + 1}/{s.epochs}: loss {metrics['train_loss']:.3f} train acc {metrics['train_accuracy']:.3f} "
        f"val acc {val['accuracy']:.3f} macro-F1 {val['macro_f1']:.3f} ({stats['seen'] / stats['seconds']:.0f} img/s"
        f"{', best' if improved else ''}){_eta(s.t_start, epoch + 1 - s.start_epoch, s.epochs - epoch - 1)}"
    )
    if s.collate.dropped:
        s.log(f"  skipped {s.collate.dropped} unreadable images so far")


def _payload(s: _Session, epoch: int, metrics: dict) -> dict:
    """A checkpoint: the model and how to rebuild it, the optimizer and schedule to resume, the run's history."""
    return {
        "model_name": s.cfg.model,
        "model_kwargs": s.kwargs,
        "model_config": s.raw_model.default_cfg.to_dict(),
        "class_names": list(s.data.class_names),
        "preprocess": s.pre.to_dict(),
        "data_spec": s.cfg.data,
        "state_dict": {k: v.detach().cpu() for k, v in s.raw_model.state_dict().items()},
        "optimizer": s.opt.state_dict(),
        "scheduler": s.sched.state_dict(),
        "schedule": {
            **s.sched_state,
            "epochs": s.epochs,
            "train_seconds": s.spent_before + time.perf_counter() - s.t_start,
        },
        "epoch": epoch,
        "best_accuracy": s.best_acc,
        "metrics": metrics,
        "history": s.history,
        "train_config": _jsonable(asdict(s.cfg)),
    }


def _finish(s: _Session) -> dict:
    """Leave the process group, warn about a model that learned nothing, and report the run."""
    if s.world > 1:
        torch.distributed.destroy_process_group()
    if s.is_main:
        _warn_near_chance(s.best_acc, s.val_split.labels, len(s.data.class_names), s.epochs, s.log)
    return {
        "best_accuracy": s.best_acc,
        "epochs": s.epochs,
        "seconds": time.perf_counter() - s.t_start,
        "is_main": s.is_main,
        "best": str(s.best_path),
        "last": str(s.last_path),
        "history": s.history,
    }


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
        log(
            f"WARNING: the best validation accuracy {best_acc:.4f} is near chance ({chance:.4f}: always predicting "
            f"the most frequent of {num_classes} classes): this model has learned next to nothing. Likely causes: too "
            f"few epochs ({epochs}), a diverging loss (lower --lr), or data with one class or unreadable images"
        )


def _train_val(data, seed: int):
    """(train, val, note). A data set without a val split (RAF-DB, AffectNet) must not select the best
    epoch on its test split: hold out a seeded 10% of train for that, and say so."""
    train_split = data.splits["train"]
    if "val" in data.splits:
        return train_split, data.splits["val"], None
    n = len(train_split)
    if n < 20:
        raise FertrtError(
            f"data {data.spec!r}: no val split and only {n} training images, too few to hold out a "
            "validation set; the test split is never used for model selection"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10)
    val, train = train_split.subset(np.sort(order[:n_val])), train_split.subset(np.sort(order[n_val:]))
    val.name = "val"
    note = (
        f"data {data.spec}: no val split; holding out {n_val} of the {n} training images (10%, seed {seed}) "
        "to select the best epoch. The test split stays unseen until `fertrt eval`"
    )
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
