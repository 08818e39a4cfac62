import os
import pathlib
import shutil

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEBIAN = REPO / "data" / "debian"


@pytest.fixture
def rng():
    # Fresh inputs every run; the seed is printed on failure to reproduce.
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def silica_bin():
    """The CLI (`cargo build --release`), or SILICA_BIN."""
    p = os.environ.get("SILICA_BIN") or str(REPO / "target" / "release" / "silica")
    if not os.path.exists(p):
        p = shutil.which("silica")
    if not p:
        pytest.skip("silica CLI not built (cargo build --release, or set SILICA_BIN)")
    return p


def catalog(rng, n, d, colors=("red", "green", "blue")):
    """n random vectors with a single-valued `color` and a multi-valued `tags` field."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    attrs = []
    for i in range(n):
        a = {"id": f"item-{i}", "color": colors[rng.integers(len(colors))]}
        t = [f"t{j}" for j in range(4) if rng.random() < 0.3]
        if t:
            a["tags"] = t
        attrs.append(a)
    return x, attrs
