# shellcheck shell=bash disable=SC2154
# A real glance-api for the tests (sourced after tests/suite/lib.sh, with py and
# S, an empty folder of the test's, set): standalone as
# ../shared/recipes/glance-barbican.md runs it, no Keystone (every request
# is admin), sqlite, on 127.0.0.1, show_image_direct_url and
# show_multiple_locations on.
#
#   glance_start PORT BACKENDS DEFAULT STORE_SECTIONS
#       BACKENDS as enabled_backends takes it ("file:file"), DEFAULT the one
#       images go to, STORE_SECTIONS the config text of those stores. Sets
#       api (http://127.0.0.1:PORT); skips the suite when Glance cannot
#       start; it is stopped at exit.
#   glance_upload NAME DISK_FORMAT FILE
#       prints the new image's id; FILE "" makes an image without data.

glance_start() {
	local port=$1 backends=$2 default=$3 stores=$4

	mkdir -p "$S"/staging "$S"/tasks "$S"/lock
	cat >"$S/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $port
workers = 0
enabled_backends = $backends
show_multiple_locations = true
show_image_direct_url = true
node_staging_uri = file://$S/staging
use_stderr = true
[database]
connection = sqlite:///$S/glance.sqlite
[paste_deploy]
flavor =
config_file = $S/glance-api-paste.ini
[glance_store]
default_backend = $default
$stores
[os_glance_staging_store]
filesystem_store_datadir = $S/staging
[os_glance_tasks_store]
filesystem_store_datadir = $S/tasks
[oslo_concurrency]
lock_path = $S/lock
EOF
	cat >"$S/glance-api-paste.ini" <<EOF
[pipeline:glance-api]
pipeline = healthcheck versionnegotiation unauthenticated-context rootapp
[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app
[app:apiversions]
paste.app_factory = glance.api.versions:create_resource
[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory
$(paste_healthcheck filter factory)
[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory
[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory
EOF
	service_db glance-manage "$S/db_sync.log" \
		"$py" -c 'import sys; from glance.cmd.manage import main; sys.exit(main())' \
		--config-file "$S/glance-api.conf" db_sync
	api=http://127.0.0.1:$port
	start_service glance-api "$api/healthcheck" "$S/log" \
		"$py" -c 'import sys; from glance.cmd.api import main; sys.exit(main())' \
		--config-file "$S/glance-api.conf"
}

glance_upload() {
	local id
	id=$(curl -sf -X POST -H 'Content-Type: application/json' \
		-d "{\"name\":\"$1\",\"disk_format\":\"$2\",\"container_format\":\"bare\"}" \
		"$api/v2/images" | "$py" -c 'import json, sys; print(json.load(sys.stdin)["id"])') ||
		return 1
	if [[ -n "$3" ]]; then
		curl -sf -X PUT -H 'Content-Type: application/octet-stream' \
			--data-binary "@$3" "$api/v2/images/$id/file" >/dev/null || return 1
	fi
	echo "$id"
}
