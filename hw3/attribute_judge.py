"""The P2 attribute judge: a small CNN trained on the real faces that tells whether a face shows the attribute,
used to score the ACGAN's attribute control (accuracy and flip rate)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from datasets import DeviceSampler, cache_dir, load_faces
from hw3 import checkpoints, distributed, evaluation
from hw3.cli import SHIPPED, UserError


class AttributeNet(nn.Module):
    """A small CNN judge: image (B, 3, 64, 64) in [-1, 1] -> attribute logits (B, 2)."""

    def __init__(self):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))

        self.net = nn.Sequential(
            block(3, 32), block(32, 64), block(64, 128), block(128, 128),  # (B, 128, 4, 4)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 2),  # (B, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_attribute_classifier(root: str | Path, attr: str, device: torch.device, epochs: int = 8,
                               seed: int = 0) -> tuple[AttributeNet, dict]:
    """Train the judge on the real training faces; report its accuracy on the real test split."""
    distributed.seed_everything(seed)
    train_set, test_set = load_faces(root, "train", attr), load_faces(root, "test", attr)
    net = AttributeNet().to(device)
    opt = distributed.adam(net.parameters(), 1e-3, weight_decay=1e-4)
    rng = torch.Generator(device).manual_seed(seed)
    sampler, batch = DeviceSampler(train_set, device, rng), 64
    steps = epochs * len(sampler) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    net.train()
    for _ in tqdm(range(steps), desc=f"{attr} classifier", leave=False):
        x, y = sampler.sample(batch)
        x = torch.where(torch.rand(len(x), 1, 1, 1, generator=rng, device=device) < 0.5, x.flip(3), x)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    acc = evaluation.accuracy(net, test_set.images, test_set.labels, device)
    return net, {"attr": attr, "test_acc": round(acc, 4), "test_images": len(test_set.names),
                 "train_images": len(train_set.names), "epochs": epochs}


def load_or_train_classifier(path: str | Path | None, root: str | Path, attr: str, device: torch.device
                             ) -> tuple[AttributeNet, dict]:
    """The judge at `path`; by default the shipped one (checkpoints/p2_<attr>_classifier.pt) or one in the cache
    folder. A judge that does not exist yet is trained on <root>/face/train and saved there, with one line saying so."""
    shipped = SHIPPED / f"p2_{attr}_classifier.pt"
    path = Path(path) if path else shipped if shipped.is_file() else cache_dir() / f"p2_{attr}_classifier.pt"
    if path.exists():
        ck = checkpoints.load_checkpoint(path, "attr_classifier")
        if ck["config"]["attr"] != attr:
            raise UserError(f"{path} judges '{ck['config']['attr']}', not '{attr}'")
        net = AttributeNet()
        checkpoints.load_state(net, checkpoints.float_state(ck["models"]["net"]), "attribute classifier")
        return net.to(device).eval(), ck["config"]
    print(f"no judge for '{attr}' yet: training one on {Path(root) / 'face' / 'train'} (a few minutes), saved to "
          f"{path}")
    net, info = train_attribute_classifier(root, attr, device)
    checkpoints.save_checkpoint(path, {"config": {"kind": "attr_classifier", **info},
                                  "models": {"net": checkpoints.half_state(net.state_dict())}})
    return net, {"kind": "attr_classifier", **info}


def judge(net: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Predicted attribute (N,) of uint8 images."""
    return evaluation.predict_logits(net, images, device).argmax(1)
