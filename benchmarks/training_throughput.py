"""Images/s of the synth generator and of training each model (CPU; CUDA where present).

python -m fertrt.benchmarks.training_throughput [--steps 20] [--models lnlattennet,resnet18]
"""

from __future__ import annotations

import argparse
import time


def main(argv=None):
    import torch
    import torch.nn.functional as F

    from fertrt.runtime.preprocess import normalize
    from fertrt.train.data.synth import SynthConfig, generate
    from fertrt.train.data.synth_source import generate_parallel
    from fertrt.train.models import create_model

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--models", default="lnlattennet,lnlattennet_paper,resnet18,scan_cci_r18")
    args = ap.parse_args(argv)
    cfg = SynthConfig()
    t0 = time.perf_counter()
    generate(cfg, "train", 500)
    one = 500 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    generate_parallel(cfg, "train", 4000)
    par = 4000 / (time.perf_counter() - t0)
    print(f"synth generator at 112x112: {one:.0f} img/s on one process, {par:.0f} img/s with a process pool")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for name in args.models.split(","):
            model = create_model(name).to(device).train()
            pre = model.default_cfg.preprocess
            imgs, labels, _ = generate(SynthConfig(size=pre.input_size[0]), "train", args.batch_size)
            x = torch.from_numpy(normalize(imgs, pre)).to(device)
            y = torch.from_numpy(labels).to(device)
            opt = torch.optim.AdamW(model.parameters(), 1e-3)

            def step():
                out = model(x, return_aux=True)
                loss, _ = model.joint_loss(out, y, F.cross_entropy)
                opt.zero_grad()
                loss.backward()
                opt.step()

            step()
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            ips = args.steps * args.batch_size / (time.perf_counter() - t0)
            print(
                f"train {name:<18} {device}: {ips:7.1f} img/s (batch {args.batch_size}, {pre.input_size[0]}x{pre.input_size[1]})",
                flush=True,
            )


if __name__ == "__main__":
    main()
