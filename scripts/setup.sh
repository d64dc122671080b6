#!/usr/bin/env bash
# One idempotent set-up step for a fresh clone (README, "Set-up").
#
# - creates a project-local Python venv (.venv) holding torch==2.11.0 from PyPI, the same build as the GPU hosts
#   (../shared/ENVIRONMENT.md: tch 0.24 pairs with libtorch 2.11.0);
# - points the stable symlink .libtorch at that venv's torch package, which .cargo/config.toml hands to torch-sys,
#   so that plain `cargo build` / `cargo test` work afterwards.
# Re-running it when everything is in place does nothing but check.
set -euo pipefail

TORCH_VERSION="2.11.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'setup: %s\n' "$*" >&2; }

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    say "error: $python not found; install Python 3.9+ (or set PYTHON=/path/to/python3) and re-run"
    exit 1
fi

venv_py="$root/.venv/bin/python"
have_torch() {
    [ -x "$venv_py" ] && "$venv_py" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}

if have_torch; then
    say "torch $TORCH_VERSION already in .venv"
else
    if [ ! -x "$venv_py" ]; then
        say "creating .venv"
        "$python" -m venv "$root/.venv"
    fi
    say "installing torch==$TORCH_VERSION into .venv (about 4.6 GB with its CUDA libraries; pip's cache is reused)"
    "$venv_py" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION" numpy
    have_torch || { say "error: torch $TORCH_VERSION did not import from .venv after installing"; exit 1; }
fi

# A relative link (.venv/lib/python3.X/site-packages/torch): the checkout can be moved or copied, and the
# binaries find libtorch through their $ORIGIN-relative RUNPATH (build.rs).
torch_dir="$("$venv_py" -c 'import torch,os;print(os.path.relpath(os.path.dirname(torch.__file__), "'"$root"'"))')"
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$torch_dir" ]; then
    ln -sfn "$torch_dir" .libtorch
    say "linked .libtorch -> $torch_dir"
fi
say "ready: cargo build / cargo test find libtorch through .libtorch"
