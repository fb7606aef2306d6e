"""A built wheel carries the compiled twins and serves from outside the checkout.

The wheel is built from a copy of the sources (so the build leaves nothing in
the checkout) and installed, without its dependencies, into a fresh venv that
sees the project venv's packages through a path file: the machine may be
offline, and what is under test is the package, not the resolver. The build
runs without isolation for the same reason; pyproject.toml's build-system
table is what an isolated build gets (checked below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import tomllib

from app.manage.services import free_port

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("app", "hotpath", "setup.py", "pyproject.toml", "requirements.txt", "README.md")
# What an in-place build leaves in hotpath/ (compiled modules, generated C,
# Cython annotations): the wheel must compile its own.
BUILD_LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.html")

pytestmark = pytest.mark.slow


def test_build_system_compiles_the_twins_in_an_isolated_build():
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    dev = [line.split("#")[0].strip() for line in (REPO / "requirements-dev.txt").open()]
    cython = next(line for line in dev if line.lower().startswith("cython"))
    assert cython in build["requires"], "pyproject.toml and requirements-dev.txt disagree on Cython"
    assert any(req.startswith("setuptools") for req in build["requires"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            ignore = BUILD_LEFTOVERS if name == "hotpath" else shutil.ignore_patterns("__pycache__")
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    env = {k: v for k, v in os.environ.items() if k != "PEREGRINE_NO_EXTENSIONS"}
    env["PEREGRINE_QUICK_BUILD"] = "1"  # -O0: the modules must exist, not be fast
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = (work / "dist").glob("peregrine-*.whl")
    return built


def test_the_wheel_carries_compiled_twins_settings_migrations_and_assets(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for module in sorted(p.stem for p in (REPO / "hotpath").glob("*.pyx")):
        assert f"hotpath/{module}{suffix}" in names, f"{module} was not compiled into the wheel"
        assert f"hotpath/{module.removesuffix('_c')}_py.py" in names
    assert "app/gunicorn_conf.py" in names and "app/manage/cli.py" in names
    migrations = {p.name for p in (REPO / "app" / "migrations").glob("*.sql")}
    assert migrations <= {Path(n).name for n in names if n.startswith("app/migrations/")}
    static = {f"app/static/{p.name}" for p in (REPO / "app" / "static").iterdir() if p.is_file()}
    assert static and static <= set(names), static - set(names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "peregrine = app.manage.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "peregrine"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    site = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_path('purelib'))"],
        text=True).strip())
    # The dependencies, from the project venv; a plain path line (not
    # site.addsitedir) so the checkout's editable install is not picked up.
    (site / "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_the_installed_package_is_the_wheel_and_compiled(installed, tmp_path):
    probe = ("import json, app, hotpath.jwt, hotpath.http, hotpath.status;"
             "print(json.dumps([app.__file__, hotpath.jwt.__name__, hotpath.status.describe()]))")
    out = subprocess.run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path,
                         env=_outside_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    app_file, _, described = json.loads(out.stdout)
    assert Path(app_file).is_relative_to(installed), f"imported {app_file}, not the wheel"
    assert "compiled" in described and "pure-python" not in described, described
    version = subprocess.run([str(installed / "bin" / "peregrine"), "--version"], cwd=tmp_path,
                             env=_outside_env(), capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "peregrine 0.1.0", version.stderr


def _outside_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PEREGRINE_NO_EXTENSIONS")}
    return {**env, **extra}


def test_peregrine_serve_from_an_installed_wheel_answers(installed, base_env, db, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(installed / "bin" / "peregrine"), "serve"], cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT,
            env=_outside_env(**{**base_env, "PEREGRINE_BIND": f"127.0.0.1:{port}",
                                "PEREGRINE_WORKERS": "1", "PEREGRINE_LOG_LEVEL": "info"}))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, f"no /healthz in 30 s:\n{log.read_text()}"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert json.load(r) == {"status": "ok", "database": "ok", "cache": "ok"}
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "hotpath.worker.GeventHTTPWorker" in text, text
    assert "does not answer" not in text and "Traceback" not in text, text
