-- A private Prosody for `make run`: loopback only, own port and data folder, our
-- mod_invites_register from plugin_paths, invite-only registration, internal storage.
-- Paths and port come from the environment (ENV_X reads $X).
run_as_root = true
pidfile = ENV_RUN_DIR .. "/prosody.pid"
data_path = ENV_RUN_DIR .. "/data"
certificates = ENV_RUN_DIR .. "/certs"
plugin_paths = { ENV_PLUGIN_DIR }
log = { info = ENV_RUN_DIR .. "/prosody.log"; { levels = { min = "info" }, to = "console" } }
daemonize = false

interfaces = { "127.0.0.1" }
c2s_ports = { tonumber(ENV_PORT) }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = {}
https_ports = {}
admin_socket = ENV_RUN_DIR .. "/data/prosody.sock"

modules_enabled = {
	"tls"; "saslauth"; "roster"; "disco"; "ping"; "admin_shell";
	"invites"; "invites_register";
}
modules_disabled = { "s2s" }

registration_invite_only = true
c2s_require_encryption = true
storage = "internal"

VirtualHost (ENV_XMPP_HOST)
	ssl = {
		certificate = ENV_RUN_DIR .. "/certs/" .. ENV_XMPP_HOST .. ".crt";
		key = ENV_RUN_DIR .. "/certs/" .. ENV_XMPP_HOST .. ".key";
	}
