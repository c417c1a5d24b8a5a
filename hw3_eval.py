"""Accuracy of a prediction CSV against a ground-truth CSV (both image_name,label).

  python hw3_eval.py pred.csv hw3_data/digits/mnistm/test.csv
"""
from __future__ import annotations

import argparse

from datasets import parse_int, read_csv
from hw3.cli import UserError, cli_main


def read_labels(path: str) -> dict[str, int]:
    """image_name -> digit label (0-9) of a course CSV."""
    labels = {r["image_name"]: parse_int(r["label"], path, "label") for r in read_csv(path, ["image_name", "label"])}
    bad = [(n, y) for n, y in labels.items() if not 0 <= y <= 9]
    if bad:
        raise UserError(f"{path}: label {bad[0][1]} of {bad[0][0]} is out of range 0-9")
    return labels


def csv_accuracy(pred_csv: str, gt_csv: str) -> tuple[float, int]:
    """(accuracy, number of images) of predictions against ground truth; every truth row needs a prediction."""
    pred, truth = read_labels(pred_csv), read_labels(gt_csv)
    missing = [n for n in truth if n not in pred]
    if missing:
        raise UserError(f"{pred_csv} has no prediction for {len(missing)} image(s) of {gt_csv} (first: {missing[0]})")
    extra = [n for n in pred if n not in truth]
    if extra:
        raise UserError(f"{pred_csv} predicts {len(extra)} image(s) absent from {gt_csv} (first: {extra[0]})")
    correct = sum(pred[n] == y for n, y in truth.items())
    return correct / len(truth), len(truth)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred_csv")
    p.add_argument("gt_csv")
    args = p.parse_args(argv)
    acc, n = csv_accuracy(args.pred_csv, args.gt_csv)
    print(f"accuracy: {acc:.4f} ({n} images)")


if __name__ == "__main__":
    cli_main(main)
