"""The machinery the problem scripts share, which a newcomer need not open first.

Bottom up (imports go one way): `cli` (one-line errors, the overwrite rule, --help defaults), `distributed` (device,
precision, DDP), `checkpoints` (atomic writes, weights_only loads, run folders), `augment`; then, beside the
top-level `datasets.py` and `models.py`: `loop` (the one run loop), `evaluation` (prediction, AdaBN, the im-score),
`fid`, `attribute_judge`, `synthetic` (test data), `shipped` (the shipped numbers and examples, for the explorer);
then the methods: `gan` + `gan_cli` (what P1 and P2 share) and `adda` (the ADDA stages of P4).
"""
