#!/usr/bin/env bash
# A stream whose scene changes at known times (issue 26, "Drift answered"): the sample video's
# frames 0-599 looped at 10 fps for 600 s, seen
#   0-200 s    as recorded (condition A),
#   200-400 s  darker, lower contrast, warmer (condition B: dusk),
#   400-600 s  mirrored, brighter, cooler (condition C),
# then its frames 600-794 (never in the first 600 s) in condition C: 19.5 s held out.
# Frames: 0-5999 the stream (changes at frames 2000 and 4000), 6000-6194 held out
# (configs/fleet_drift.yaml). Written under out/ (never committed).
#
#   bash scripts/drift_video.sh [out/drift/drift.mp4]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/drift/drift.mp4}
SRC=${VTEST:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}
mkdir -p "$(dirname "$OUT")"
B="eq=brightness=-0.14:contrast=0.85,colorbalance=rs=0.15:gs=0.0:bs=-0.15"
C="hflip,eq=brightness=0.10,colorbalance=rs=-0.15:gs=0.0:bs=0.15"
ffmpeg -hide_banner -loglevel error -y -i "$SRC" -filter_complex "
[0:v]split=2[train][held];
[train]trim=end_frame=600,setpts=N/10/TB,loop=loop=3:size=600:start=0,trim=end_frame=2000,setpts=N/10/TB,split=3[a][b0][c0];
[b0]${B}[b];
[c0]${C}[c];
[held]trim=start_frame=600:end_frame=795,setpts=N/10/TB,${C}[d];
[a][b][c][d]concat=n=4:v=1:a=0,setpts=N/10/TB,format=yuv420p[out]" \
  -map "[out]" -r 10 -c:v libx264 -preset veryfast -crf 18 -g 20 -an "$OUT"
echo "$OUT: $(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$OUT") frames at 10 fps (changes at frames 2000 and 4000; held out 6000-6194)"
