#!/bin/bash
# The TensorBoard pictures of docs/tensorboard.md: a headless-Chromium screenshot of tabs of `tensorboard --logdir LOGDIR`.
#   bash docs/screenshots.sh LOGDIR TAB...     (TAB: timeseries, text, pr_curves, projector, hparams;
#                                               needs chromium: apt-get install chromium)
set -euo pipefail
logdir=${1:?usage: bash docs/screenshots.sh LOGDIR TAB...}
shift
port=6199
out=$(cd "$(dirname "$0")" && pwd)
tensorboard --logdir "$logdir" --host 127.0.0.1 --port $port >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 15  # the first scan of the log directory
for tab in "$@"; do
  chromium --headless=new --no-sandbox --hide-scrollbars --enable-unsafe-swiftshader --window-size=1600,1000 \
    --virtual-time-budget=30000 --screenshot="$out/tensorboard_$tab.png" "http://127.0.0.1:$port/?forceSVG=true#$tab" \
    2>/dev/null  # forceSVG: headless Chromium's WebGL left most charts empty
done
