"""t-SNE of a trained digit model's features on source and target dev-test images: by digit class, by domain.

  python tsne.py --ckpt runs/p3/dann_usps2mnistm/best.pt --data hw3_data --out-dir figs/dann
Works on P3 (DANN feature extractor) and P4 (source encoder for source images, target encoder for target) checkpoints.
"""
from __future__ import annotations

import argparse

import torch

from datasets import check_domain, load_digits
from hw3 import checkpoints, cli, distributed, evaluation
from hw3.cli import UserError


def feature_fns(ckpt_path: str, device: torch.device):
    """(source feature fn, target feature fn, checkpoint config) for a P3 or P4 checkpoint."""
    ck = checkpoints.load_checkpoint(ckpt_path)
    kind = ck["config"].get("kind")
    if kind == "p3_dann":
        from p3_dann import load_classifier

        net, _ = load_classifier(ckpt_path, device)
        return net.features, net.features, ck["config"]
    if kind == "p4_adda":
        from p4_adda import load_encoders

        src_enc, tgt_enc, _, _ = load_encoders(ckpt_path, device)
        if src_enc is None:
            raise UserError(f"{ckpt_path} is an exported P4 model without its source encoder; "
                            "use the run's best.pt or last.pt")
        return src_enc, tgt_enc, ck["config"]
    raise UserError(f"{ckpt_path} is a '{kind}' checkpoint; t-SNE needs a P3 or P4 digit model")


def cap_per_class(labels: torch.Tensor, per_class: int, rng: torch.Generator) -> torch.Tensor:
    """Indices of at most `per_class` randomly chosen images of each class."""
    perm = torch.randperm(len(labels), generator=rng)
    keep = torch.cat([perm[labels[perm] == c][:per_class] for c in labels.unique()])
    return keep.sort().values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", required=True, help="a P3 or P4 run's best.pt / last.pt, or an exported P3 model")
    p.add_argument("--data", default="hw3_data", help="root of the course layout")
    p.add_argument("--source", help="default: the checkpoint's source domain")
    p.add_argument("--target", help="default: the checkpoint's target domain")
    p.add_argument("--split", default="test", help="the split of both domains to embed")
    p.add_argument("--per-class", type=int, default=100, help="at most this many images per class and domain")
    p.add_argument("--out-dir", required=True, help="folder for tsne_class.png and tsne_domain.png (new, empty, or "
                   "one this script wrote before)")
    cli.add_force(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    return cli.show_defaults(p)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cli.check_range(args, per_class=">=1")

    dist = distributed.setup(args.device, args.seed)
    src_fn, tgt_fn, config = feature_fns(args.ckpt, dist.device)
    source = config["source"] if args.source is None else args.source
    target = config["target"] if args.target is None else args.target
    check_domain(source), check_domain(target)
    out = cli.output_folder(args.out_dir, args.force, "t-SNE folder")

    rng = torch.Generator().manual_seed(args.seed)
    feats, labels, domains = [], [], []
    for k, (name, fn) in enumerate(((source, src_fn), (target, tgt_fn))):
        data = load_digits(args.data, name, args.split)
        idx = cap_per_class(data.labels, args.per_class, rng)
        feats.append(evaluation.predict_logits(fn, data.images[idx], dist.device).flatten(1))
        labels.append(data.labels[idx])
        domains.append(torch.full((len(idx),), k))
    x, y, dom = torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(domains).numpy()

    from sklearn.manifold import TSNE

    emb = TSNE(2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=args.seed).fit_transform(x)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = f"{config.get('kind')} {config.get('mode', '')} {source}->{target}".replace("  ", " ")
    for name, colour, legend in (("class", y, [str(c) for c in range(10)]), ("domain", dom, [source, target])):
        fig, ax = plt.subplots(figsize=(6, 6))
        cmap = plt.get_cmap("tab10")
        for v, lab in enumerate(legend):
            m = colour == v
            ax.scatter(emb[m, 0], emb[m, 1], s=4, color=cmap(v), label=lab)
        ax.set_title(f"{title}: by {name}")
        ax.legend(markerscale=3, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(out / f"tsne_{name}.png", dpi=100)
        plt.close(fig)
    print(f"wrote {out / 'tsne_class.png'} and {out / 'tsne_domain.png'} ({len(x)} points)")


if __name__ == "__main__":
    cli.cli_main(main)
