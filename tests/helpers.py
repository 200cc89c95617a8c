"""Shared test fixtures' machinery: one small trained LNLAttenNet, exported once per session."""

from fertrt.export.onnx_export import ExportOptions, export_checkpoint
from fertrt.train.augment import AugmentConfig
from fertrt.train.trainer import TrainConfig, train

TINY_SPEC = "synth:1500:easy"
NO_AUGMENT = AugmentConfig(hflip=0.5, crop_scale=(1.0, 1.0), rotation_deg=0, color_jitter=0, erasing=0)


def train_tiny(out, model="lnlattennet", epochs=5, **kw):
    kw.setdefault("augment", NO_AUGMENT)
    cfg = TrainConfig(model=model, data=TINY_SPEC, out=str(out), epochs=epochs, batch_size=32, lr=2e-3, warmup_epochs=0.5, **kw)
    return train(cfg, log=lambda *a: None)


def export_tiny(ckpt, out_onnx, **kw):
    export_checkpoint(ckpt, out_onnx, ExportOptions(force=True, **kw), log=lambda *a: None)
    return out_onnx
