#!/usr/bin/env bash
# Create benchmarks/.venv: regedu (editable) + the peers it is compared with (MONAI, ANTsPy,
# SimpleITK, VoxelMorph). The kit's own .venv is never touched.
#
#   bash benchmarks/setup_peers.sh            # create or update; a rerun is a quick no-op
#   PYTHON=python3.11 bash benchmarks/setup_peers.sh
#   REGEDU_TORCH="torch --index-url <CUDA index>" bash benchmarks/setup_peers.sh   # choose torch yourself
#
# Steps: venv -> torch (scripts/install_torch.sh: CPU build when no GPU) -> regedu -e (no deps) + its
# deps -> peers pinned in benchmarks/requirements-peers.txt -> import and trivial call of each peer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
py="$venv/bin/python"
requirements="$here/requirements-peers.txt"
stamp="$venv/.regedu-peers-stamp"
say() { echo "[peers] $*"; }
# pip, quiet, without the warnings about index folders that this machine's pip config names but lacks
pip() {
    "$py" -m pip --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# A stamp holds a hash of everything that decides what is installed; same hash -> nothing to do.
fingerprint() {
    cat "$requirements" "$root/pyproject.toml" "$root/scripts/install_torch.sh" "${BASH_SOURCE[0]}" \
        | sha256sum | cut -d' ' -f1
    echo "${REGEDU_TORCH:-}"
}

if [ ! -x "$py" ]; then
    say "creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(fingerprint)" ] && "$py" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ['regedu', 'monai', 'ants', 'SimpleITK', 'voxelmorph'])))" 2>/dev/null; then
    say "up to date ($venv); delete $stamp to force a reinstall"
    exit 0
fi

say "torch"
bash "$root/scripts/install_torch.sh" "$py" | { grep -E "^\[regedu\]|^Successfully installed" || true; }
torch_pin="torch==$("$py" -c 'import torch; print(torch.__version__)')"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$torch_pin" >"$constraints"  # keep that build: no dependency may swap it for a CUDA one

say "regedu (editable) and its dependencies"
pip install --no-deps -e "$root"
deps=$("$py" - "$root/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith("torch")))
EOF
)
# shellcheck disable=SC2086
pip install -c "$constraints" -r "$requirements" $deps

say "checking that each peer imports and runs"
"$py" - <<'EOF'
import numpy as np
import torch

import regedu

img = torch.rand(1, 1, 8, 8)
disp = torch.zeros(1, 2, 8, 8)
assert torch.allclose(regedu.warps.warp(img, disp), img, atol=1e-6)

from monai.networks.blocks import DVF2DDF, Warp
assert torch.allclose(Warp(mode="bilinear", padding_mode="border")(img, disp), img, atol=1e-6)
assert DVF2DDF(num_steps=7)(disp).abs().max() == 0

import SimpleITK as sitk
assert sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Image(8, 8, sitk.sitkFloat32), 1.0)).shape == (8, 8)

import ants
assert ants.from_numpy(np.ones((8, 8), dtype="float32")).shape == (8, 8)

import voxelmorph as vxm
model = vxm.nn.models.VxmPairwise(ndim=2, source_channels=1, target_channels=1)
assert model is not None

import monai, scipy, SimpleITK  # noqa: E401
print("[peers] ok: torch", torch.__version__, "| numpy", np.__version__, "| scipy", scipy.__version__,
      "| monai", monai.__version__, "| antspyx", ants.__version__, "| SimpleITK", SimpleITK.__version__,
      "| voxelmorph", vxm.__version__)
EOF
"$py" -m pip check >/dev/null || { "$py" -m pip check; exit 1; }
fingerprint >"$stamp"
say "ready: run benchmarks with $venv/bin/python benchmarks/<name>.py"
