#!/usr/bin/env bash
# Issue 18: edges_and_shoes, InfoGAN on the first 12 components plus InfoGAN-CR's contrastive regulariser from 44,640 kimg
# (configs/edges_and_shoes_infogan_cr.json). Extra flags are passed through (e.g. --num-gpus 1, --device cuda:1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${HESSIAN_GAN:-$here/../target/release/hessian-gan}" train --config "$here/../configs/edges_and_shoes_infogan_cr.json" "$@"
