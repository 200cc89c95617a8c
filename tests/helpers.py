"""Shared test fixtures' machinery: one small trained LNLAttenNet, exported once per session."""

from fertrt.export.onnx_export import ExportOptions, export_checkpoint
from fertrt.train.augment import AugmentConfig
from fertrt.train.trainer import TrainConfig, train

TINY_SPEC = "synth:1500:easy"
NO_AUGMENT = AugmentConfig(hflip=0.5, crop_scale=(1.0, 1.0), rotation_deg=0, color_jitter=0, erasing=0)


def train_tiny(out, model="lnlattennet", epochs=5, **kw):
    kw.setdefault("augment", NO_AUGMENT)
    cfg = TrainConfig(
        model=model, data=TINY_SPEC, out=str(out), epochs=epochs, batch_size=32, lr=2e-3, warmup_epochs=0.5, **kw
    )
    return train(cfg, log=lambda *a: None)


def export_tiny(ckpt, out_onnx, **kw):
    export_checkpoint(ckpt, out_onnx, ExportOptions(force=True, **kw), log=lambda *a: None)
    return out_onnx


# ---------------------------------------------------------------- image files and CLI exits (the runtime's tests)
def write_bgr(path, img):
    """An image file written by OpenCV (BGR, grey or BGRA array) -> its path."""
    import cv2

    cv2.imwrite(str(path), img)
    return path


def synth_image_files(folder, n, size=112):
    """n synth test faces as PNG files f0.png, f1.png, ... in folder (made if missing)."""
    import cv2

    from fertrt.train.data.synth import SynthConfig, generate

    imgs, _, _ = generate(SynthConfig(size=size), "test", n)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_bgr(folder / f"f{i}.png", cv2.cvtColor(im, cv2.COLOR_RGB2BGR)) for i, im in enumerate(imgs)]


def exit_code(main, argv):
    """main's exit status, whether it returns it or argparse exits (range checks on the options)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
