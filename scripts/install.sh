#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs spigot-toolkit with every extra.
#
# Idempotent: each step checks whether its result is already there and skips it.
# ad3 2.2.1 ships Cython output that does not compile on Python >= 3.11 (longintrepr.h);
# we unpack its sdist, regenerate the C++ from the shipped .pyx files with Cython 3 and
# build it without build isolation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv"
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q -c "$root/constraints.txt")

if [ ! -x "$py" ]; then
  echo "[install] creating $venv"
  python3 -m venv "$venv"
fi

if ! "$py" -c "import numpy, Cython, setuptools, wheel, torch" 2>/dev/null; then
  echo "[install] build tools and torch (CPU build, pinned in constraints.txt)"
  "${pip[@]}" numpy "cython>=3" setuptools wheel torch
fi

if ! "$py" -c "import ad3" 2>/dev/null; then
  echo "[install] building ad3 2.2.1 from its sdist with regenerated Cython sources"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
    ad3==2.2.1 -d "$work"
  tar -xzf "$work"/ad3-2.2.1.tar.gz -C "$work"
  src="$work/ad3-2.2.1"
  for module in base factor_graph extensions; do
    "$venv/bin/cython" --cplus -X language_level=2 \
      "$src/python/ad3/$module.pyx" -o "$src/python/ad3/$module.cpp"
  done
  "${pip[@]}" --no-build-isolation "$src"
fi

# The movie-review sentences that spigot.experiments.data reads ship only in vaderSentiment
# 3.3.2's sdist (additional_resources/hutto_ICWSM_2014.tar.gz), not in its wheel: extract that
# one file into the environment, checked against its known digest.
movies="$venv/share/spigot-toolkit/vaderSentiment-3.3.2/movieReviewSnippets_GroundTruth.txt"
movies_sha256=c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350
if [ ! -f "$movies" ]; then
  echo "[install] movie-review sentences from the vaderSentiment 3.3.2 sdist"
  (
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      vaderSentiment==3.3.2 -d "$work"
    inner=vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz
    tar -xzf "$work/vaderSentiment-3.3.2.tar.gz" -C "$work" "$inner"
    tar -xzf "$work/$inner" -C "$work" hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt
    extracted="$work/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    echo "$movies_sha256  $extracted" | sha256sum --check --quiet
    mkdir -p "$(dirname "$movies")"
    install -m 0644 "$extracted" "$movies.partial"
    mv "$movies.partial" "$movies"
  )
fi

stamp="$venv/.spigot-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "[install] spigot-toolkit and its extras (editable)"
  "${pip[@]}" -e ".[all]"
  touch "$stamp"
fi
