#!/usr/bin/env bash
# Regenerates the test media in this folder from generated sound (see
# README.md). Needs sox, flac and lame (Debian: apt-get install sox flac lame).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# -R: sox's repeatable mode (a fixed seed for the noise), so the files come
# out byte for byte the same.
sox -R -n -r 22050 -b 16 -c 1 "$work/tone.wav" synth 3 sine 440-660 vol 0.5
sox -R -n -r 22050 -b 16 -c 1 "$work/noise.wav" synth 3 whitenoise vol 0.02
sox -R -m "$work/tone.wav" "$work/noise.wav" sine-noise.wav
flac --silent -8 --force -o sine-noise.flac sine-noise.wav
lame --quiet -b 48 --noreplaygain sine-noise.wav sine-noise.mp3
sha256sum sine-noise.wav sine-noise.flac sine-noise.mp3
