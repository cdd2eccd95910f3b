# shellcheck shell=bash
# Run Debian's nginx as a test server; sourced after tests/suite/lib.sh
# (free_port, wait_port, stop_pid) by tests/suite/http/run.sh and
# bench/fetch.sh.
#
#   nginx_start DIR SERVERS...   write DIR/nginx.conf (pid, logs and temp
#                                paths under DIR; access log DIR/access.log
#                                with the Range header of each request) with
#                                the given server blocks, start nginx and wait
#                                until it answers on the first "listen"
#   nginx_stop DIR               stop it and wait until it is gone
#
# nginx_start returns 1 after printing the reason when nginx cannot start.

nginx_start() {
	local dir=$1 port
	shift
	mkdir -p "$dir"/tmp/body "$dir"/tmp/proxy "$dir"/tmp/fastcgi \
		"$dir"/tmp/uwsgi "$dir"/tmp/scgi || return 1
	{
		printf 'daemon off;\nworker_processes 2;\npid %s/nginx.pid;\n' "$dir"
		printf 'error_log %s/error.log info;\n' "$dir"
		printf 'events { worker_connections 512; }\nhttp {\n'
		printf '  default_type application/octet-stream;\n'
		printf '  log_format t %s;\n' \
			"'\$request_method \$uri \$status \$body_bytes_sent range=\"\$http_range\"'"
		printf '  access_log %s/access.log t;\n' "$dir"
		printf '  client_body_temp_path %s/tmp/body;\n' "$dir"
		printf '  proxy_temp_path %s/tmp/proxy;\n' "$dir"
		printf '  fastcgi_temp_path %s/tmp/fastcgi;\n' "$dir"
		printf '  uwsgi_temp_path %s/tmp/uwsgi;\n' "$dir"
		printf '  scgi_temp_path %s/tmp/scgi;\n' "$dir"
		printf '%s\n' "$@"
		printf '}\n'
	} >"$dir/nginx.conf"
	if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
		echo "nginx not installed (apt-get install nginx-light)"
		return 1
	fi
	port=$(grep -o 'listen 127.0.0.1:[0-9]*' "$dir/nginx.conf" | head -1 |
		cut -d: -f2)
	setsid /usr/sbin/nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
		</dev/null >"$dir/nginx.out" 2>&1 &
	echo $! >"$dir/nginx.master"
	wait_port "$port" "$(cat "$dir/nginx.master")" && return 0
	echo "nginx did not start: $(tail -n 3 "$dir/error.log" "$dir/nginx.out" 2>/dev/null | tr '\n' ' ')"
	return 1
}

nginx_stop() {
	[[ -f "$1/nginx.master" ]] || return 0
	stop_pid "$(cat "$1/nginx.master")"
	rm -f "$1/nginx.master"
}
