#!/usr/bin/env bash
# Course interface for P4: bash hw3_p4.sh TEST_IMG_DIR TARGET OUT_CSV
# Predicts every image of TEST_IMG_DIR with the shipped improved-ADDA model whose target domain is TARGET.
exec bash "$(dirname "${BASH_SOURCE[0]}")/hw3/digits_predict.sh" p4_adda.py p4_adda "$@"
