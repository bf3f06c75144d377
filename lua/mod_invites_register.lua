-- mod_invites_register (native): invite-based account registration for Prosody.
-- Drop-in replacement for the stock module of the same name (XEP-0401, XEP-0445,
-- XEP-0379). The decisions and the invite index live in a Rust library beside this file;
-- this plugin reads options, hooks events, reads and writes storage and calls Prosody's
-- APIs.

local st = require "util.stanza";
local jid_split = require "util.jid".split;
local jid_bare = require "util.jid".bare;
local jid_node = require "util.jid".node;
local nodeprep = require "util.encodings".stringprep.nodeprep;
local deserialize = require "util.serialization".deserialize;
local filters = require "util.filters";
local time_now = require "util.time".now;
local datamanager = require "util.datamanager";
local modulemanager = require "core.modulemanager";
local rostermanager = require "core.rostermanager";
local storagemanager = require "core.storagemanager";
local usermanager = require "core.usermanager";

local LIB_NAME = "invites_register";

-- 0.12's typed getters return nil for a value they cannot parse: log and use the default.
local function option_boolean(name, default)
	local value = module:get_option_boolean(name);
	if value == nil then
		if module:get_option(name) ~= nil then
			module:log("error", "Option %s must be a boolean, using the default (%s)", name, tostring(default));
		end
		return default;
	end
	return value;
end

local require_encryption = option_boolean("c2s_require_encryption", option_boolean("require_encryption", true));
local invite_only = option_boolean("registration_invite_only", true);

if prosody.process_type ~= "prosody" then
	return; -- prosodyctl: nothing to serve
end
module:depends("invites");
if invite_only then
	module:depends("register_ibr");
end

-- Metrics (mod_http_openmetrics serves them per host as prosody_mod_invites_register/*).
local function by_label(family)
	return setmetatable({}, { __index = function (t, label)
		local m = family:with_labels(label);
		t[label] = m;
		return m;
	end });
end
local preauth_metric = by_label(module:metric("counter", "preauth", "", "Preauth IQs by result", { "result" }));
local registration_metric = by_label(module:metric("counter", "registrations", "",
	"Registrations decided by this module, by result", { "result" }));
local consumed_metric = module:metric("counter", "consumed", "", "Invite tokens consumed", {}):with_labels();
local cleaned_metric = module:metric("counter", "cleaned", "", "Expired invites deleted", {}):with_labels();
local pending_gauge = module:metric("gauge", "pending", "", "Invites in the invite index", {}):with_labels();
local reserved_gauge = module:metric("gauge", "reserved", "", "Usernames reserved by bound invites", {}):with_labels();
local claims_gauge = module:metric("gauge", "claims", "", "Registrations in progress holding a token", {}):with_labels();

-- The native library: beside this file (make install, tarball, .deb), or where luarocks
-- put it for a rock (`prosodyctl install`).
local function library_paths()
	local paths = { module:get_directory() .. "/" .. LIB_NAME .. ".so" };
	-- A rock: this file is <tree>/share/lua/X.Y/mod_invites_register.lua, get_directory() is
	-- the rock's metadata folder, and luarocks put the library in <tree>/lib/lua/X.Y/. Only
	-- for a plugin loaded from that tree: a folder install never takes a rock's library.
	local tree = prosody.paths.installer and prosody.paths.installer:gsub("/+$", "");
	if tree and module.path and module.path:sub(1, #tree + 1) == tree .. "/" then
		local lua_version = _VERSION:match("%d+%.%d+");
		table.insert(paths, tree .. "/lib/lua/" .. lua_version .. "/" .. LIB_NAME .. ".so");
	end
	return paths;
end

local native;
do
	local errors = {};
	for _, path in ipairs(library_paths()) do
		local open_native, load_err = package.loadlib(path, "luaopen_" .. LIB_NAME);
		if open_native then
			local ok, lib = pcall(open_native);
			if ok then
				native = lib;
				break;
			end
			load_err = lib;
		end
		table.insert(errors, path .. ": " .. tostring(load_err):gsub("%s+", " "));
	end
	if not native then
		-- Fail closed: no invite features, and every registration on this host refused.
		module:log("error", "Cannot load the native library (%s): all registrations on %s are refused; "
			.. "install a build for %s (the package for your system, or `make install`)",
			table.concat(errors, "; "), module.host, _VERSION);
		module:hook("user-registering", function (event)
			event.allowed = false;
			event.reason = "Registration is temporarily unavailable";
			registration_metric.unavailable:add(1);
		end);
		return;
	end
end

local store = module:open_store("invite_token", "map");
local records_store = module:open_store("invite_token"); -- the keyval view: all records at once
-- Tokens used but not yet deleted from the store, one appended item each (an append costs
-- 20 µs; a keyval entry per token, 700 µs on an ext3 directory).
local markers = module:open_store("invites_register_consumed", "archive");

-- On internal storage the host's invites are one file, whose identity the library checks.
local function store_file()
	local _, driver_name = storagemanager.get_driver(module.host, "invite_token");
	if driver_name == "internal" then
		return datamanager.getpath(nil, module.host, "invite_token", "dat");
	end
end

local host_state, settings = native.new({
	host = module.host;
	invite_only = invite_only;
	require_encryption = require_encryption;
	token_attempts = module:get_option("invites_register_token_attempts");
	ipv6_prefix = module:get_option("invites_register_throttle_ipv6_prefix");
	cleanup_interval = module:get_option("invites_register_cleanup_interval");
	delete_delay = module:get_option("invites_register_delete_delay");
	store_file = store_file();
});
for _, err in ipairs(settings.errors) do
	module:log("error", "%s", err);
end
local tracks_file = host_state:tracks_file();
-- SQL storage reads per token (one indexed query) and deletes at once, as stock does.
local batching = tracks_file and settings.delete_delay > 0;
local delete_interval = settings.delete_delay; -- stretched when store writes are slow

-- Feeds one stored record to the index. With a file the index also keeps `uri` and
-- `additional_data`, so a valid preauth needs no storage read.
local function put(token, record)
	if type(record) ~= "table" then
		host_state:forget(token);
		return false;
	end
	local node = type(record.jid) == "string" and jid_node(record.jid) or nil;
	local data = record.additional_data;
	local reset = type(data) == "table" and data.allow_reset or nil;
	if type(reset) ~= "string" then
		reset = nil;
	end
	return host_state:put(token, record.type, record.jid, record.expires, record.allow_registration ~= false,
		record.reusable, node and (nodeprep(node) or false), reset and (nodeprep(reset) or false),
		tracks_file and record.uri or nil, tracks_file and data or nil);
end

-- Fills the index from all of the host's records (one read).
local loaded = false; -- once filled, the index needs no check before use on SQL
local function load_index()
	local started = time_now();
	host_state:load_begin();
	local records, err = records_store:get(nil);
	if records == nil and err then
		host_state:load_abort();
		module:log("error", "Cannot read the invites of %s: %s", module.host, tostring(err));
		return;
	end
	records = records or {};
	-- The library indexes all records in one call, except those with names to nodeprep.
	for _, token in ipairs(host_state:load(records)) do
		put(token, records[token]);
	end
	local took = time_now() - started;
	module:log("debug", "Indexed %d invites in %.3f s", host_state:load_end(), took);
	loaded = true;
	if batching then
		-- A batch write parses the store as this did, and writes it: space them from the start.
		delete_interval = math.max(delete_interval, native.next_interval(settings.delete_delay, took));
	end
end

-- Invites announced by mod_invites (`invite-created` fires before it stores them).
local created = {};

-- Makes the index match the store: announced invites, then the file's identity.
local function sync()
	if created[1] then
		local announced = created;
		created = {};
		if host_state:creation_end() then
			for _, invite in ipairs(announced) do
				put(invite.token, invite);
			end
		end
	end
	if (tracks_file or not loaded) and host_state:stale() then
		load_index();
	end
end

-- Reads one host record for the index (SQL storage: an indexed query). Returns the
-- record, and false when the read failed (a storage error is never valid).
local function reread(token)
	local record, err = store:get(nil, token);
	if err then
		module:log("warn", "Failed to read invite token: %s", tostring(err));
		return nil, false;
	end
	put(token, record);
	return record, true;
end

-- Before judging `token` (and the names reserved for `username`): with a file the index
-- is checked against the file; with SQL the records concerned are read again. Returns
-- the token, or nil when its record could not be read.
local function refresh(token, username)
	sync();
	if tracks_file then
		return token;
	end
	if username then
		for _, t in ipairs({ host_state:reserving(username) }) do
			if t ~= token then
				reread(t);
			end
		end
	end
	if token and not select(2, reread(token)) then
		return nil;
	end
	return token;
end

module:hook("invite-created", function (invite)
	if type(invite) ~= "table" or not invite.allow_registration or type(invite.token) ~= "string" then
		return; -- no host record
	end
	if not created[1] then
		host_state:creation_begin();
		module:add_timer(0, sync);
	end
	created[#created + 1] = invite;
end, -1000);

-- Batched deletes: one write of the store for many used tokens. Failed writes are retried
-- after 1 s, then twice as long each time, up to 5 minutes.
local batch_timer, stretch_logged = nil, false;
local retry_delay = 0;
local flush;
local function schedule_flush(delay)
	if not batch_timer then
		batch_timer = module:add_timer(delay or delete_interval, flush);
	end
end
local function schedule_retry()
	retry_delay = math.min(math.max(retry_delay * 2, 1, delete_interval), 300);
	schedule_flush(retry_delay);
end

function flush()
	batch_timer = nil;
	sync();
	local batch = host_state:batch();
	if not batch then
		return;
	end
	local fresh = host_state:write_begin();
	local started = time_now();
	local ok, err = true, nil;
	local function remove(user, tokens)
		local keys = {};
		for _, token in ipairs(tokens) do
			keys[token] = store.remove;
		end
		local done, why = store:set_keys(user, keys);
		if not done then
			ok, err = false, why;
		end
	end
	if batch.host[1] then
		remove(nil, batch.host);
	end
	for _, user_tokens in ipairs(batch.users) do
		remove(user_tokens[1], user_tokens[2]);
	end
	local took = time_now() - started;
	host_state:write_end(fresh);
	host_state:batch_done(ok);
	if ok and host_state:status().awaiting_deletion == 0 then
		local cleared, why = markers:delete(nil);
		if not cleared then
			module:log("warn", "Failed to clear the used-token log: %s", tostring(why));
		end
	end
	if ok then
		retry_delay = 0;
	else
		module:log("error", "Failed to delete %d used invite tokens, will retry: %s", #batch.host, tostring(err));
	end
	local interval = native.next_interval(settings.delete_delay, took);
	if interval > settings.delete_delay and not stretch_logged then
		module:log("info", "One write of the invite store takes %.0f ms: deleting used tokens every %.1f s",
			took * 1000, interval);
		stretch_logged = true;
	end
	delete_interval = interval;
	if not ok then
		schedule_retry();
	elseif host_state:status().awaiting_deletion > 0 then
		schedule_flush();
	end
end

-- Deletes a used token's entries at once (never undoes the registration on failure); what
-- failed is queued and retried, and stays refused meanwhile.
local function delete_now(token, host_record, inviter)
	local fresh = tracks_file and host_state:write_begin();
	local failed = false;
	if host_record then
		local ok, err = store:set(nil, token, nil);
		if ok then
			host_state:forget(token);
		else
			module:log("error", "Failed to delete used invite token: %s", tostring(err));
			failed = true;
		end
	end
	if inviter then
		local ok, err = store:set(inviter, token, nil);
		if not ok then
			module:log("error", "Failed to delete used contact invite of %s: %s", inviter, tostring(err));
			failed = true;
		end
	end
	if tracks_file then
		host_state:write_end(fresh);
	end
	if failed then
		host_state:queue(token, host_record, inviter);
		schedule_retry();
	end
end

-- Consumes a token: refused at once, durably marked, deleted with the next batch.
local function consume(token, host_record, inviter)
	consumed_metric:add(1);
	if batching then
		local ok, err = markers:append(nil, nil, st.stanza("consumed", {
			token = token; inviter = inviter; host = host_record and "1" or nil;
		}), os.time());
		host_state:queue(token, host_record, inviter);
		if ok then
			schedule_flush();
		else
			-- e.g. the archive's item limit: write the batch now, which clears the log.
			module:log("warn", "Cannot mark used invite token (%s): deleting the used tokens now", tostring(err));
			flush();
		end
		return;
	end
	delete_now(token, host_record, inviter);
end

-- session.validated_invite objects: plain tables with mod_invites' fields and `use()`.
local invite_methods = {};
local invite_mt = { __index = invite_methods };
local issued = setmetatable({}, { __mode = "k" }); -- the ones this host's preauth made

function invite_methods:use()
	local verdict, _, host_record, inviter = host_state:use(self.token);
	if verdict == "consumed" then
		consume(self.token, host_record, inviter);
	end
	return true;
end

local function invite_of(event)
	return event.validated_invite or (event.session and event.session.validated_invite);
end

-- Whether an invite for this host is presented, and its token when it is a plausible one.
-- An invite validated on another host counts as none.
local function presented(invite)
	if type(invite) ~= "table" then
		return false, nil;
	end
	if not issued[invite] and invite.host ~= nil and invite.host ~= module.host then
		return false, nil;
	end
	local token = invite.token;
	if type(token) ~= "string" or token == "" or #token > native.max_token_length then
		return true, nil;
	end
	return true, token;
end

-- Advertise invite-based registration to unauthenticated clients where IBR exists.
-- COMPAT: urn:xmpp:invite is for Conversations <= 2.18, yaxim and Siskin.
local legacy_invite_stream_feature = st.stanza("register", { xmlns = "urn:xmpp:invite" });
local invite_stream_feature = st.stanza("register", { xmlns = "urn:xmpp:ibr-token:0" });
module:hook("stream-features", function (event)
	local session, features = event.origin, event.features;
	if session.type ~= "c2s_unauthed" or (require_encryption and not session.secure) then
		return;
	end
	if not modulemanager.is_loaded(module.host, "register_ibr") then
		return;
	end
	features:add_child(legacy_invite_stream_feature);
	features:add_child(invite_stream_feature);
end);

-- The preauth's decision: true, type, inviter, reusable, uri, additional_data | false,
-- error type, condition, text, metrics label.
local function judge_preauth(origin, token)
	local ok, err_type, condition, text, label = host_state:preauth_gate(token, origin.ip, origin.secure,
		origin.host == module.host);
	if not ok then
		return false, err_type, condition, text, label;
	end
	sync();
	if not tracks_file then
		-- SQL: the record itself (one indexed query, as stock) is judged.
		local record, err = store:get(nil, token);
		if err then
			module:log("warn", "Failed to read invite token: %s", tostring(err));
		end
		local r = type(record) == "table" and record or {};
		local valid, kind, inviter, reusable, refusal_label = host_state:preauth_judge_record(token, origin.ip,
			err ~= nil, r.type, r.jid, r.expires, r.allow_registration ~= false, r.reusable);
		if not valid then
			return false, kind, inviter, reusable, refusal_label;
		end
		return true, kind, inviter, reusable, r.uri, r.additional_data;
	end
	local valid, kind, inviter, reusable, uri, data = host_state:preauth_judge(token, origin.ip, false);
	if not valid then
		return false, kind, inviter, reusable, uri;
	end
	if data == true then -- kept by the index as not representable: read it
		local record = store:get(nil, token);
		data = record and record.additional_data;
	elseif data then
		data = deserialize(data);
	end
	return true, kind, inviter, reusable, uri, data;
end

-- Client submits a preauth token before registering (XEP-0445 / XEP-0401).
module:hook("stanza/iq/urn:xmpp:pars:0:preauth", function (event)
	local origin, stanza = event.origin, event.stanza;
	local token = stanza.tags[1].attr.token;
	local ok, kind, inviter, reusable, uri, data = judge_preauth(origin, token);
	if not ok then
		local err_type, condition, text, label = kind, inviter, reusable, uri;
		preauth_metric[label]:add(1);
		origin.send(st.error_reply(stanza, err_type, condition, text));
		return true;
	end
	local invite = setmetatable({
		token = token;
		type = kind;
		inviter = inviter;
		username = inviter;
		uri = uri;
		additional_data = data;
		reusable = reusable;
		host = module.host;
	}, invite_mt);
	issued[invite] = true;
	origin.validated_invite = invite;
	preauth_metric.valid:add(1);
	origin.send(st.reply(stanza));
	return true;
end);

-- Registration attempt: the invite's current state, binding, reset user, reservation.
module:hook("user-registering", function (event)
	if event.allowed == false then
		return;
	end
	local is_presented, token = presented(invite_of(event));
	local username = type(event.username) == "string" and nodeprep(event.username) or nil;
	token = refresh(token, username);
	local verdict, code, reason, label = host_state:registering(is_presented, token, username);
	if verdict == "refuse" then
		module:log("debug", "Refusing registration of %s: %s", tostring(event.username), code);
		event.allowed = false;
		event.reason = reason;
		registration_metric[label]:add(1);
	elseif verdict == "allow" and code then
		event.allow_reset = code;
	end
end);

-- Claims of registrations in progress, by invite object.
local claims = setmetatable({}, { __mode = "k" });

-- Last voter: claim a single-use token only for a registration still allowed.
module:hook("user-registering", function (event)
	if event.allowed == false then
		return;
	end
	local invite = invite_of(event);
	local is_presented, token = presented(invite);
	if not (is_presented and token) then
		return;
	end
	local handle, reason = host_state:claim(token);
	if handle then
		claims[invite] = handle;
	elseif handle == false then
		event.allowed = false;
		event.reason = reason;
		registration_metric.used:add(1);
	end
end, -1000);

-- A register form for a stream whose invite is bound to a name shows that name.
local function prefill(name, id)
	return function (stanza)
		if stanza.name ~= "iq" or stanza.attr.type ~= "result" or stanza.attr.id ~= id
		or not stanza:get_child("query", "jabber:iq:register") then
			return stanza;
		end
		stanza = st.clone(stanza); -- the query is mod_register_ibr's shared template
		local query = stanza:get_child("query", "jabber:iq:register");
		local username = query:get_child("username");
		if username and #username == 0 then
			username:text(name);
		end
		local form = query:get_child("x", "jabber:x:data");
		for field in (form and form:childtags("field") or function () end) do
			if field.attr.var == "username" and not field:get_child("value") then
				field:tag("value"):text(name):up();
			end
		end
		return stanza;
	end;
end

-- Around in-band registration: pre-fill the form; give the claim back when IBR failed
-- after allowing (name taken, storage error), since then no event fires.
module:wrap_event("stanza/iq/jabber:iq:register:query", function (handlers, event_name, event_data)
	local session, stanza = event_data.origin, event_data.stanza;
	local invite = session and session.validated_invite;
	local filter;
	if stanza.attr.type == "get" and issued[invite] and session.filters then
		local name = host_state:bound_name(invite.token);
		if name then
			filter = prefill(name, stanza.attr.id);
			filters.add_filter(session, "stanzas/out", filter);
		end
	end
	local ret = handlers(event_name, event_data);
	if filter then
		filters.remove_filter(session, "stanzas/out", filter);
	end
	local handle = invite and claims[invite];
	if handle then
		claims[invite] = nil;
		host_state:release(invite.token, handle);
	end
	return ret;
end);

-- Settles the claim of a finished registration; returns the invite and the inviter to
-- act on, if any.
local function settle(event)
	local invite = invite_of(event);
	local is_presented, token = presented(invite);
	if not (is_presented and token) then
		return nil;
	end
	local handle = claims[invite];
	claims[invite] = nil;
	local verdict, label, host_record, inviter = host_state:settle(token, handle);
	if not verdict then
		return nil;
	end
	registration_metric[label]:add(1);
	if verdict == "consumed" then
		consume(token, host_record, inviter);
	end
	return invite, inviter;
end

-- One-way subscription: `user` sees `contact`.
local function subscribe(user, contact)
	local host = module.host;
	local user_jid, contact_jid = user .. "@" .. host, contact .. "@" .. host;
	rostermanager.set_contact_pending_out(user, host, contact_jid);
	rostermanager.set_contact_pending_in(contact, host, user_jid);
	rostermanager.subscribed(contact, host, user_jid);
	rostermanager.process_inbound_subscription_approval(user, host, contact_jid);
end

-- Roles granted by the invite: a list (13 makes these; the first is the primary role)
-- or a set (0.12 makes these); nil when of another shape.
local function role_shape(roles)
	if type(roles) ~= "table" or next(roles) == nil then
		return nil;
	end
	local list, set, n = {}, {}, 0;
	for key, value in pairs(roles) do
		if type(key) == "number" and type(value) == "string" then
			list[key], n = value, n + 1;
		elseif type(key) == "string" and value == true then
			set[key] = true;
		else
			return nil;
		end
	end
	if n > 0 and next(set) == nil and #list == n then
		return "list", list;
	elseif n == 0 then
		return "set", set;
	end
end

local function assign_roles(username, roles)
	if roles == nil then
		return;
	end
	local shape, names = role_shape(roles);
	if not shape then
		module:log("warn", "Ignoring roles of unexpected shape in the invite used by %s", username);
		return;
	end
	if usermanager.set_user_role then -- Prosody 13
		if shape == "set" then
			module:log("warn", "Invite for %s carries roles in the 0.12 form; a role migration is required", username);
			module:open_store("roles"):set(username, roles);
			return;
		end
		for i, name in ipairs(names) do
			local grant = i == 1 and usermanager.set_user_role or usermanager.add_user_secondary_role;
			local ok, res, err = pcall(grant, username, module.host, name);
			if not ok or not res then
				module:log("error", "Failed to grant role %s to %s: %s", name, username, tostring(ok and err or res));
			end
		end
		return;
	end
	if shape == "list" then
		local set = {};
		for _, name in ipairs(names) do
			set[name] = true;
		end
		names = set;
	end
	local ok, err = module:open_store("roles"):set(username, names);
	if not ok then
		module:log("error", "Failed to store roles for %s: %s", username, tostring(err));
	end
end

-- Account created with an invite: consume it, befriend the inviter, grant roles.
module:hook("user-registered", function (event)
	local invite, inviter = settle(event);
	if not invite then
		return;
	end
	local username = event.username;
	if inviter then
		module:log("debug", "Creating mutual subscription between %s and %s", inviter, username);
		subscribe(inviter, username);
		subscribe(username, inviter);
		rostermanager.roster_push(inviter, module.host, username .. "@" .. module.host);
	end
	local data = invite.additional_data;
	if type(data) == "table" then
		assign_roles(username, data.roles);
	end
end);

-- Password reset through a reset invite: consume it.
module:hook("user-password-reset", function (event)
	settle(event);
end);

-- XEP-0379: a subscription request carrying the user's contact-invite token is approved.
module:hook("presence/bare", function (event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "subscribe" or not stanza.attr.to then
		return;
	end
	local preauth = stanza:get_child("preauth", "urn:xmpp:pars:0");
	local token = preauth and preauth.attr.token;
	local username, host = jid_split(stanza.attr.to);
	local contact = jid_bare(stanza.attr.from);
	if type(token) ~= "string" or token == "" or not username or host ~= module.host or not contact then
		return;
	end
	local expires, err = store:get(username, token);
	if err then
		module:log("warn", "Failed to read contact invite of %s: %s", username, tostring(err));
	end
	refresh();
	if err or not host_state:contact_valid(token, expires) then
		return;
	end
	module:log("debug", "Approving inbound subscription to %s from %s", username, contact);
	if not rostermanager.set_contact_pending_in(username, host, contact, stanza) then
		return;
	end
	if not rostermanager.subscribed(username, host, contact) then
		return;
	end
	-- Without a file the index may not know the host record: delete it anyway, as stock.
	local host_record = host_state:consume_contact(token, username, expires) or not tracks_file;
	consume(token, host_record, username);
	rostermanager.roster_push(username, host, contact);
	if rostermanager.is_user_subscribed(username, host, contact)
	or rostermanager.is_contact_pending_out(username, host, contact) then
		return;
	end
	if rostermanager.set_contact_pending_out(username, host, contact) then
		rostermanager.roster_push(username, host, contact);
		module:send(st.presence({ type = "subscribe", from = username .. "@" .. host, to = contact }));
	else
		module:log("warn", "Failed to set contact pending out for %s", username);
	end
end, 1);

-- Deletes expired invites: host records and per-user contact-invite entries, one write
-- each. Returns the counts.
local function cleanup()
	if tracks_file then
		sync();
	else
		load_index();
	end
	local now = os.time();
	local expired, removed, contacts, users = host_state:expired(), 0, 0, 0;
	local function remove(user, keys, n)
		local fresh = host_state:write_begin();
		local ok, err = store:set_keys(user, keys);
		host_state:write_end(fresh);
		if not ok then
			module:log("error", "Failed to delete %d expired invites: %s", n, tostring(err));
		end
		return ok;
	end
	if expired[1] then
		local keys = {};
		for _, token in ipairs(expired) do
			keys[token] = store.remove;
		end
		if remove(nil, keys, #expired) then
			host_state:cleaned(expired);
			removed = #expired;
		end
	end
	local ok, iterate, state, init = pcall(records_store.users, records_store);
	if not ok then
		module:log("error", "Cannot list the users with contact invites: %s", tostring(iterate));
		iterate = function () end;
	end
	local owners = {};
	for user in iterate, state, init do
		if type(user) == "string" and user ~= "" then
			owners[#owners + 1] = user;
		end
	end
	for _, user in ipairs(owners) do
		local keys, n = {}, 0;
		for token, expires in pairs(records_store:get(user) or {}) do
			if type(expires) == "number" and expires < now then
				keys[token], n = store.remove, n + 1;
			end
		end
		if n > 0 and remove(user, keys, n) then
			contacts, users = contacts + n, users + 1;
		end
	end
	module:log("info", "Removed %d expired invites and %d expired contact invites of %d users",
		removed, contacts, users);
	cleaned_metric:add(removed + contacts);
	return removed, contacts, users;
end

local cleanup_interval = settings.cleanup_interval;
if cleanup_interval > 0 then
	module:add_timer(cleanup_interval, function ()
		cleanup();
		return cleanup_interval;
	end);
end

-- Forget expired claims, consumed tokens and throttle windows.
module:add_timer(60, function ()
	host_state:sweep();
	return 60;
end);

module:hook_global("stats-update", function ()
	sync();
	local s = host_state:status();
	pending_gauge:set(s.pending);
	reserved_gauge:set(s.bound_names);
	claims_gauge:set(s.claims);
end);

-- The admin shell: `invites_register:cleanup(host)`, `invites_register:status(host)`
-- (`prosodyctl shell invites_register status example.com`).
function status() --luacheck: ignore 111/status
	sync();
	return host_state:status();
end

function cleanup_now() --luacheck: ignore 111/cleanup_now
	return cleanup();
end

local shell_commands = {
	cleanup = function (self, host) --luacheck: ignore 212/self
		local mod = modulemanager.get_module(host, "invites_register");
		if not mod or not mod.cleanup_now then
			return nil, "mod_invites_register is not loaded on " .. tostring(host);
		end
		local removed, contacts, users = mod.cleanup_now();
		return true, ("Removed %d expired invites and %d expired contact invites of %d users")
			:format(removed, contacts, users);
	end;
	status = function (self, host)
		local mod = modulemanager.get_module(host, "invites_register");
		if not mod or not mod.status then
			return nil, "mod_invites_register is not loaded on " .. tostring(host);
		end
		local s = mod.status();
		for _, line in ipairs({
			{ "pending invites", s.pending }; { "bound usernames", s.bound_names };
			{ "tokens awaiting deletion", s.awaiting_deletion }; { "claims in flight", s.claims };
			{ "throttled addresses", s.throttled };
		}) do
			self.session.print(("%-26s %d"):format(line[1] .. ":", line[2]));
		end
		self.session.print(("%-26s %.1f MiB"):format("index memory:", s.index_bytes / 1048576));
		return true, ("%d pending invites on %s"):format(s.pending, host);
	end;
};

local console_env = module:shared("/*/admin_shell/env");
console_env.invites_register = console_env.invites_register or {};
for name, command in pairs(shell_commands) do
	console_env.invites_register[name] = command;
	-- Prosody 13 maps `prosodyctl shell invites_register NAME HOST` through these.
	module:add_item("shell-command", {
		section = "invites_register";
		section_desc = "Invite-based registration (mod_invites_register)";
		name = name;
		desc = name == "cleanup" and "Delete expired invites now" or "Show the invite index";
		args = { { name = "host", type = "string" } };
		host_selector = "host";
		handler = command;
	});
end

-- Consumed tokens left from before a restart are deleted with the first batch.
if batching then
	local items, err = markers:find(nil);
	if not items and err then
		module:log("error", "Cannot read the used-token log: %s", tostring(err));
	end
	for _, item in items or function () end do
		if st.is_stanza(item) and item.attr.token then
			host_state:restore(item.attr.token, item.attr.host == "1", item.attr.inviter);
			schedule_flush(0);
		end
	end
end
load_index();

-- Write what is waiting before the process goes.
module:hook_global("server-stopping", flush);
function module.unload()
	flush();
end
