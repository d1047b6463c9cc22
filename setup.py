"""Build script for the cachekit C extension (cachekit._core).

Every native dependency is found through pkg-config. When one is missing the
build stops with a message naming the Debian package to install, instead of a
compiler traceback about a missing header.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup

# pkg-config module name -> Debian package that provides it.
NATIVE_DEPENDENCIES = {
    "libcrypto": "libssl-dev",
    "libssl": "libssl-dev",
    "msgpack": "libmsgpack-dev",
    "liblz4": "liblz4-dev",
    "libxxhash": "libxxhash-dev",
    "hiredis": "libhiredis-dev",
}


def _fail(message: str) -> None:
    sys.stderr.write(f"\ncachekit build error: {message}\n\n")
    raise SystemExit(1)


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    return out.stdout.split()


def _native_flags() -> tuple[list[str], list[str]]:
    if shutil.which("pkg-config") is None:
        _fail("pkg-config is not installed. Install it with: apt-get install pkg-config")
    missing = [
        f"{name} (apt-get install {deb})"
        for name, deb in NATIVE_DEPENDENCIES.items()
        if subprocess.run(["pkg-config", "--exists", name]).returncode != 0
    ]
    if missing:
        _fail(
            "missing native libraries: "
            + ", ".join(missing)
            + "\nInstall them with: apt-get install "
            + " ".join(dict.fromkeys(NATIVE_DEPENDENCIES.values()))
        )
    if subprocess.run(["pkg-config", "--atleast-version=3.0", "libcrypto"]).returncode != 0:
        _fail("OpenSSL 3.0 or newer is required (apt-get install libssl-dev)")
    names = list(NATIVE_DEPENDENCIES)
    return _pkg_config("--cflags", *names), _pkg_config("--libs", *names)


def _compile_flags() -> list[str]:
    flags = ["-std=gnu11", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra"]
    # CI and developers set CACHEKIT_STRICT=1 so any warning fails the build.
    if os.environ.get("CACHEKIT_STRICT") == "1":
        flags.append("-Werror")
    return flags + os.environ.get("CACHEKIT_EXTRA_CFLAGS", "").split()


cflags, libs = _native_flags()

core = Extension(
    "cachekit._core",
    # src/core: the pure C core (never includes Python.h); src/binding: the
    # CPython binding that turns it into cachekit._core.
    sources=sorted(glob.glob("src/core/*.c")) + sorted(glob.glob("src/binding/*.c")),
    depends=sorted(glob.glob("src/core/*.h")) + sorted(glob.glob("src/binding/*.h")),
    include_dirs=["src/core", "src/binding"],
    extra_compile_args=cflags + _compile_flags(),
    extra_link_args=libs + os.environ.get("CACHEKIT_EXTRA_LDFLAGS", "").split(),
)

setup(ext_modules=[core])
