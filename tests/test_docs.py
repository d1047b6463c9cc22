"""The docs never send users to PyPI's `cachekit`, a different project with
the same import name."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_no_pip_install_of_cachekit_from_the_index():
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "cachekit").rglob("*.py"),
             *(ROOT / "scripts").glob("*"), *(ROOT / "examples").rglob("*.py")]
    # "pip install cachekit", "pip install 'cachekit[kms]'", "pip install -U cachekit==1"...
    from_index = re.compile(r"pip3? install(\s+-\S+)*\s+['\"]?cachekit(?![\w./-])")
    offenders = []
    for path in files:
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if from_index.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
    readme = (ROOT / "README.md").read_text()
    assert "pip install '.[kms]'" in readme


def test_the_pattern_catches_the_old_line():
    from_index = re.compile(r"pip3? install(\s+-\S+)*\s+['\"]?cachekit(?![\w./-])")
    assert from_index.search("(`pip install 'cachekit[kms]'`)")
    assert from_index.search("pip install cachekit")
    assert from_index.search("pip install -U cachekit==0.24.1")
    assert not from_index.search("pip install boto3, or install cachekit from its checkout")
    assert not from_index.search("pip install '.[kms]'")
    assert not from_index.search("pip install /path/to/cachekit-checkout")
    assert not from_index.search("pip install 'dist/cachekit-0.1.0-cp311-cp311-linux_x86_64.whl[kms]'")
