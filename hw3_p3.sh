#!/usr/bin/env bash
# Course interface for P3: bash hw3_p3.sh TEST_IMG_DIR TARGET OUT_CSV
# Predicts every image of TEST_IMG_DIR with the shipped DANN model whose target domain is TARGET.
exec bash "$(dirname "${BASH_SOURCE[0]}")/hw3/digits_predict.sh" p3_dann.py p3_dann "$@"
