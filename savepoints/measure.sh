#!/bin/bash
# The figures of docs/savepoints.md: a minute without and one with an upgrade (savepoints.bench), savepoints and
# a SIGKILL of the rendezvous under 300/s; on the embedded system or on a session cluster started here. Set
# SCORESTREAM_KAFKA_PORT and SCORESTREAM_METRICS_PORT_BASE to yours. Under the heavy lock:
#   flock /tmp/scorestream-heavy.lock savepoints/measure.sh embedded|cluster
set -u
MODE=$1
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/scorestream-measure}; REST_PORT=${REST_PORT:-$REST_PORT}
export SCORESTREAM_HOME=$WORK/home-$MODE COLUMNS=250
rm -rf $SCORESTREAM_HOME $WORK/cluster-$MODE; mkdir -p $WORK
S=".venv/bin/scorestream"
CL=""
if [ $MODE = cluster ]; then
  .venv/bin/python -m savepoints.cluster $WORK/cluster-$MODE $REST_PORT > $WORK/cluster-$MODE.out 2>&1 &
  CL=$!
  for i in $(seq 120); do grep -q "session cluster at" $WORK/cluster-$MODE.out && break; sleep 1; done
  UP="$S up --flink http://127.0.0.1:$REST_PORT"
else
  UP="$S up"
fi
cleanup() { $S down; [ -n "$CL" ] && kill $CL && wait $CL; }
trap cleanup EXIT
echo "== $(date -u +%T) $UP"; /usr/bin/time -f "up: %e s" $UP || exit 1
echo "== $(date -u +%T) python -m savepoints.bench --rate 300 --duration 60"
.venv/bin/python -m savepoints.bench --rate 300 --duration 60
echo "== $(date -u +%T) savepoints under 300/s"
$S publish --synthetic --count 9000 --rate 300 > /dev/null 2>&1 &
PUB=$!
sleep 8
$S savepoint rendezvous; sleep 2; $S savepoint extract; sleep 2; $S savepoint rendezvous
wait $PUB
echo "== $(date -u +%T) crash of the rendezvous under 300/s"
$S publish --synthetic --count 9000 --rate 300 > /dev/null 2>&1 &
PUB=$!
sleep 10
if [ $MODE = cluster ]; then
  # the job's process and its job on the cluster die together: SIGKILL of the process, the job cancelled with
  # no savepoint (what a lost TaskManager does to it, minus Flink's own restart)
  JID=$(python3 -c "import json;print(json.load(open('$SCORESTREAM_HOME/savepoints/rendezvous/deployment.json'))['flink_job_id'])")
  kill -9 -- -$(cut -d' ' -f1 $SCORESTREAM_HOME/run/flink.rendezvous.pid); curl -s -X PATCH "http://127.0.0.1:$REST_PORT/jobs/$JID?mode=cancel" >/dev/null
else
  kill -9 -- -$(cut -d' ' -f1 $SCORESTREAM_HOME/run/flink.rendezvous.pid)
fi
/usr/bin/time -f "up after the kill: %e s" $UP
grep -h "answered since\|restoring from" $SCORESTREAM_HOME/logs/flink.rendezvous.log | tail -2
wait $PUB
$S status | tail -n 8
echo "== $(date -u +%T) done"
