"""setup.py stops with a message naming the Debian package when pkg-config
cannot find a native library (what building the sdist on a bare machine
shows), instead of a compiler error about a missing header."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = ["libcrypto", "libssl", "msgpack", "liblz4", "libxxhash", "hiredis"]


def _pc_file(module: str) -> pathlib.Path:
    out = subprocess.run(["pkg-config", "--variable=pcfiledir", module], capture_output=True, text=True, check=True)
    return pathlib.Path(out.stdout.strip()) / f"{module}.pc"


def _setup_with(pc_dir: pathlib.Path) -> subprocess.CompletedProcess:
    # PKG_CONFIG_LIBDIR replaces pkg-config's default search path.
    env = {**os.environ, "PKG_CONFIG_LIBDIR": str(pc_dir), "PKG_CONFIG_PATH": ""}
    return subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_no_native_libraries_names_every_package(tmp_path):
    result = _setup_with(tmp_path)
    assert result.returncode == 1
    assert "cachekit build error: missing native libraries:" in result.stderr
    for module, deb in [("libcrypto", "libssl-dev"), ("msgpack", "libmsgpack-dev"), ("liblz4", "liblz4-dev"),
                        ("libxxhash", "libxxhash-dev"), ("hiredis", "libhiredis-dev")]:
        assert f"{module} (apt-get install {deb})" in result.stderr
    assert "Install them with: apt-get install libssl-dev libmsgpack-dev liblz4-dev" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("absent", ["hiredis", "liblz4"])
def test_one_missing_library_is_named_alone(tmp_path, absent):
    for module in MODULES:
        if module != absent:
            (tmp_path / f"{module}.pc").symlink_to(_pc_file(module))
    result = _setup_with(tmp_path)
    assert result.returncode == 1, result.stderr
    missing = result.stderr.split("missing native libraries:")[1].split("\n")[0]
    assert missing.strip().startswith(absent + " (apt-get install")
    assert missing.count("apt-get install") == 1


def test_all_libraries_found_passes_the_check(tmp_path):
    for module in MODULES:
        (tmp_path / f"{module}.pc").symlink_to(_pc_file(module))
    result = _setup_with(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0"
