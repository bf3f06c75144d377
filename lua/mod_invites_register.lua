-- mod_invites_register (native): invite-based account registration for Prosody.
-- Drop-in replacement for the stock module of the same name (XEP-0401, XEP-0445,
-- XEP-0379). The decisions live in a Rust library beside this file; this plugin reads
-- options, hooks events and calls Prosody's APIs, nothing else.

local st = require "util.stanza";
local jid_split = require "util.jid".split;
local jid_bare = require "util.jid".bare;
local nodeprep = require "util.encodings".stringprep.nodeprep;
local modulemanager = require "core.modulemanager";
local rostermanager = require "core.rostermanager";
local usermanager = require "core.usermanager";

local LIB_NAME = "invites_register";

-- 0.12's typed getters return nil for a value they cannot parse: warn and use the default.
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

local store;
if prosody.process_type == "prosody" then
	module:depends("invites");
	if invite_only then
		module:depends("register_ibr");
	end
	store = module:open_store("invite_token", "map");
end

-- Load the native library by absolute path, without touching package.cpath.
local lib_path = module:get_directory() .. "/" .. LIB_NAME .. ".so";
local native;
do
	local open_native, load_err = package.loadlib(lib_path, "luaopen_" .. LIB_NAME);
	if open_native then
		local ok, lib = pcall(open_native);
		if ok then
			native = lib;
		else
			load_err = lib;
		end
	end
	if not native then
		-- Fail closed: no invite features, and every registration on this host refused.
		module:log("error", "Cannot load native library %s (%s): all registrations on %s are refused; "
			.. "rebuild it for %s and reinstall with `make install`",
			lib_path, tostring(load_err):gsub("%s+", " "), module.host, _VERSION);
		module:hook("user-registering", function (event)
			event.allowed = false;
			event.reason = "Registration is temporarily unavailable";
		end);
		return;
	end
end

local host_state, option_warning = native.new({
	host = module.host;
	invite_only = invite_only;
	require_encryption = require_encryption;
	token_attempts = module:get_option("invites_register_token_attempts");
	nodeprep = function (s) return nodeprep(s); end;
	stanza_mt = st.stanza_mt;
});
if option_warning then
	module:log("error", "%s", option_warning);
end

local roles_store = store and module:open_store("roles");
-- The calls made once per preauth IQ or registration, as plain C functions.
local native_fns = host_state:functions();
local preauth, preauth_finish = native_fns.preauth, native_fns.preauth_finish;
local lookup_token, registering = native_fns.lookup_token, native_fns.registering;
local claim, settle_claim, release = native_fns.claim, native_fns.settle, native_fns.release;

-- Deletes an invite's stored entries (never undoes the registration on failure).
local function delete_entries(token, inviter)
	local ok, err = store:set(nil, token, nil);
	if not ok then
		module:log("error", "Failed to delete used invite token: %s", tostring(err));
	end
	if inviter then
		ok, err = store:set(inviter, token, nil);
		if not ok then
			module:log("error", "Failed to delete used contact invite of %s: %s", inviter, tostring(err));
		end
	end
end

-- session.validated_invite objects: mod_invites' fields and `use()` for other modules.
-- Only the token, the inviter, the host that validated the invite and the record read
-- then (which the library judges again at registration) are stored; the other fields
-- are read from the record on access, which keeps the object small on the preauth path.
local invite_methods = {};
local record_fields = { type = true, uri = true, additional_data = true };
local invite_mt = {
	__index = function (self, key)
		if invite_methods[key] then
			return invite_methods[key];
		elseif key == "username" then
			return rawget(self, "inviter");
		elseif key == "reusable" then
			return not not self._record.reusable;
		elseif record_fields[key] then
			return self._record[key];
		end
	end;
};

function invite_methods:use()
	if self.reusable then
		return true;
	end
	host_state:consumed(self.token);
	delete_entries(self.token, self.username);
	return true;
end

local function new_invite(token, record, inviter)
	return setmetatable({ token = token, inviter = inviter, host = module.host, _record = record }, invite_mt);
end

local function invite_of(event)
	return event.validated_invite or (event.session and event.session.validated_invite);
end

-- Advertise invite-based registration to unauthenticated clients where IBR exists.
local features = host_state:features();
module:hook("stream-features", function (event)
	local session = event.origin;
	if session.type ~= "c2s_unauthed" or (require_encryption and not session.secure) then
		return;
	end
	if not modulemanager.is_loaded(module.host, "register_ibr") then
		return;
	end
	for _, feature in ipairs(features) do
		event.features:add_child(feature);
	end
end);

-- The preauth's result: st.reply's stanza, without its re-validation of attribute
-- values that come from a stanza Prosody has already parsed (a third of the hook's
-- own cost).
local stanza_mt = st.stanza_mt;
local function result_of(iq)
	local attr = iq.attr;
	return setmetatable({
		name = "iq";
		attr = { to = attr.from, from = attr.to, id = attr.id, type = "result" };
		tags = {};
	}, stanza_mt);
end

-- Client submits a preauth token before registering (XEP-0445 / XEP-0401). The library
-- decides; the reply is result_of(stanza), or st.error_reply with the library's refusal.
module:hook("stanza/iq/urn:xmpp:pars:0:preauth", function (event)
	local origin, stanza = event.origin, event.stanza;
	local token, err_type, condition, text = preauth(stanza, origin.ip, origin.secure,
		origin.host == module.host);
	if token then
		local record, err = store:get(nil, token);
		if err then
			module:log("warn", "Failed to read invite token: %s", tostring(err));
		end
		local valid, inviter_or_type;
		valid, inviter_or_type, condition, text = preauth_finish(token, origin.ip, record, err);
		if valid then
			origin.validated_invite = new_invite(token, record, inviter_or_type);
			origin.send(result_of(stanza));
			return true;
		end
		err_type = inviter_or_type;
	end
	origin.send(st.error_reply(stanza, err_type, condition, text));
	return true;
end);

-- Registration attempt: judge the invite's stored state, binding and reset user.
module:hook("user-registering", function (event)
	if event.allowed == false then
		return;
	end
	local invite = invite_of(event);
	local record, err;
	local token = lookup_token(invite);
	if token then
		record, err = store:get(nil, token);
		if err then
			module:log("warn", "Failed to read invite token: %s", tostring(err));
		end
	end
	local verdict, code, reason = registering(invite, event.username, false, record);
	if verdict == nil then
		module:log("debug", "Refusing registration of %s: %s", tostring(event.username), code);
		event.allowed = false;
		event.reason = reason;
	elseif type(verdict) == "string" then
		event.allow_reset = verdict;
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
	if type(invite) ~= "table" then
		return;
	end
	local handle, err = claim(invite);
	if handle then
		claims[invite] = handle;
	elseif err then
		event.allowed = false;
		event.reason = "The invite token is no longer valid";
	end
end, -1000);

-- IBR failed after allowing (name taken, storage error): give the claim back.
module:wrap_event("stanza/iq/jabber:iq:register:query", function (handlers, event_name, event_data)
	local ret = handlers(event_name, event_data);
	local invite = event_data.origin and event_data.origin.validated_invite;
	local handle = invite and claims[invite];
	if handle then
		claims[invite] = nil;
		release(invite, handle);
	end
	return ret;
end);

-- Settles the claim of a finished registration; returns the invite to act on, if any.
local function settle(event)
	local invite = invite_of(event);
	if type(invite) ~= "table" then
		return nil;
	end
	local handle = claims[invite];
	claims[invite] = nil;
	if not settle_claim(invite, handle) then
		return nil;
	end
	if not invite.reusable then
		delete_entries(invite.token, invite.username);
	end
	return invite;
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

local function assign_roles(username, roles)
	if roles == nil then
		return;
	end
	local shape, names = host_state:roles(roles);
	if not shape then
		module:log("warn", "Ignoring roles of unexpected shape in the invite used by %s", username);
		return;
	end
	if usermanager.set_user_role then -- Prosody 13
		if shape == "set" then
			module:log("warn", "Invite for %s carries roles in the 0.12 form; a role migration is required", username);
			roles_store:set(username, roles);
			return;
		end
		local ok, res, err = pcall(usermanager.set_user_role, username, module.host, names[1]);
		if not ok or not res then
			module:log("error", "Failed to set role %s for %s: %s", names[1], username, tostring(ok and err or res));
		end
		for i = 2, #names do
			ok, res, err = pcall(usermanager.add_user_secondary_role, username, module.host, names[i]);
			if not ok or not res then
				module:log("error", "Failed to add role %s for %s: %s", names[i], username, tostring(ok and err or res));
			end
		end
		return;
	end
	local set = {};
	for _, name in ipairs(names) do
		set[name] = true;
	end
	local ok, err = roles_store:set(username, set);
	if not ok then
		module:log("error", "Failed to store roles for %s: %s", username, tostring(err));
	end
end

-- Account created with an invite: consume it, befriend the inviter, grant roles.
module:hook("user-registered", function (event)
	local invite = settle(event);
	if not invite then
		return;
	end
	local username = event.username;
	local inviter = invite.inviter;
	if inviter then
		module:log("debug", "Creating mutual subscription between %s and %s", inviter, username);
		subscribe(inviter, username);
		subscribe(username, inviter);
		rostermanager.roster_push(inviter, module.host, username .. "@" .. module.host);
	end
	local additional_data = invite.additional_data;
	if type(additional_data) == "table" then
		assign_roles(username, additional_data.roles);
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
	local username, host = jid_split(stanza.attr.to);
	local contact = jid_bare(stanza.attr.from);
	if not username or host ~= module.host or not contact then
		return;
	end
	local token = host_state:subscribe_token(stanza);
	if not token then
		return;
	end
	local expires, err = store:get(username, token);
	if err then
		module:log("warn", "Failed to read contact invite of %s: %s", username, tostring(err));
	end
	if not host_state:contact_valid(token, expires) then
		return;
	end
	module:log("debug", "Approving inbound subscription to %s from %s", username, contact);
	if not rostermanager.set_contact_pending_in(username, host, contact, stanza) then
		return;
	end
	if not rostermanager.subscribed(username, host, contact) then
		return;
	end
	host_state:consumed(token, expires);
	delete_entries(token, username);
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

-- Forget expired claims, consumed tokens and throttle windows.
module:add_timer(60, function ()
	host_state:sweep();
	return 60;
end);

-- Sizes of the native state (claims, consumed tokens, throttled addresses), for
-- monitoring: require "core.modulemanager".get_module(host, "invites_register").stats()
function stats() --luacheck: ignore 111/stats
	return host_state:stats();
end
