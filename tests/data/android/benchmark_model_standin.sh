#!/bin/sh
# A stand-in for LiteRT's Android arm64 benchmark_model (which this machine can
# neither fetch at run time nor execute): it takes the real tool's flags, fails
# the way the tool fails when --graph cannot be opened, waits out --min_secs,
# and replays the recorded Pixel 6 output (benchmark_model_output.txt) with the
# flag values it was given. Its arguments go to "$0.args" so a test can check
# them. The timings it prints are the recording's, not a measurement.
graph="" threads=1 runs=50 min_secs=1 max_secs=150 warmup=1 signature=""
for arg in "$@"; do
  case "$arg" in
    --graph=*) graph="${arg#--graph=}" ;;
    --num_threads=*) threads="${arg#--num_threads=}" ;;
    --num_runs=*) runs="${arg#--num_runs=}" ;;
    --min_secs=*) min_secs="${arg#--min_secs=}" ;;
    --max_secs=*) max_secs="${arg#--max_secs=}" ;;
    --warmup_runs=*) warmup="${arg#--warmup_runs=}" ;;
    --signature_to_run_for=*) signature="${arg#--signature_to_run_for=}" ;;
  esac
done
printf '%s\n' "$@" > "$0.args"
echo "INFO: STARTING!"
echo "INFO: Log parameter values verbosely: [0]"
echo "INFO: Min num runs: [$runs]"
echo "INFO: Min runs duration (seconds): [$min_secs]"
echo "INFO: Max runs duration (seconds): [$max_secs]"
echo "INFO: Num threads: [$threads]"
echo "INFO: Min warmup runs: [$warmup]"
echo "INFO: Graph: [$graph]"
echo "INFO: Signature to run: [$signature]"
echo "INFO: Report the peak memory footprint: [1]"
echo "INFO: #threads used for CPU inference: [$threads]"
if [ ! -r "$graph" ]; then
  echo "ERROR: Could not open '$graph'."
  echo "ERROR: Benchmarking failed."
  exit 1
fi
echo "INFO: Loaded model $graph"
echo "INFO: Initialized TensorFlow Lite runtime."
echo "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
echo "INFO: XNNPACK delegate created."
echo "INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate."
echo "INFO: The input model file size (MB): $(($(wc -c < "$graph") / 1000000)).$(($(wc -c < "$graph") % 1000000 / 1000))"
echo "INFO: Initialized session in 42.117ms."
echo "INFO: Running benchmark for at least $warmup iterations and at least 0 seconds but terminate if exceeding $max_secs seconds."
echo "INFO: count=27 first=31245 curr=17102 min=16820 max=31245 avg=18334.1 std=2712"
echo ""
echo "INFO: Running benchmark for at least $runs iterations and at least $min_secs seconds but terminate if exceeding $max_secs seconds."
sleep "$min_secs"
echo "INFO: count=58 first=17210 curr=17044 min=16802 max=19871 avg=17283.4 std=512"
echo ""
echo "INFO: Inference timings in us: Init: 42117, First inference: 31245, Warmup (avg): 18334.1, Inference (avg): 17283.4"
echo "INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion."
echo "INFO: Memory footprint delta from the start of the tool (MB): init=12.3164 overall=14.9023"
echo "INFO: Overall peak memory footprint (MB) via periodic monitoring: 21.3047"
echo "INFO: Memory status at the end of exeution:"
echo "INFO: - VmRSS              : 76 MB"
echo "INFO: + RssAnnon           : 46 MB"
echo "INFO: + RssFile + RssShmem : 29 MB"
