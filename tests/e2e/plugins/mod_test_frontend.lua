-- Test-only helper for the end-to-end suite (never install it on a real server).
--
-- A registration front-end like mod_register_web / mod_register_api: it checks an
-- invite token with mod_invites' own `get(token)` API (as a web page does when the
-- invite link is opened), then registers the account outside of in-band registration:
-- fires `user-registering` with `validated_invite` set to mod_invites' object, creates
-- the user with usermanager when still allowed, and fires `user-registered`.
--
-- Exposed in the admin shell as `testfrontend`; every command answers "OK: <status>":
--   testfrontend:register(host, token, username, password[, ip])
--       → "registered", "refused: <reason>", "invalid: <error>", "exists", "failed: <error>"
--   testfrontend:open(host, token) → "<form id>" or "invalid: <error>"
--       (the invite was validated when the page was shown; the form is submitted later)
--   testfrontend:submit(form_id, username, password[, ip[, host]]) → as register()
--       (`host`: register on another host than the one that validated the invite)

local get_module = require "core.modulemanager".get_module;
local usermanager = require "core.usermanager";
local nodeprep = require "util.encodings".stringprep.nodeprep;

if prosody.process_type == "prosody" then
	module:depends("invites");
end

local SOURCE = "mod_test_frontend";
local DEFAULT_IP = "127.0.0.1";

-- Open forms: id → { host = ..., invite = mod_invites' validated invite }.
local forms = module:shared("/*/test_frontend/forms");
local form_counter = 0;

local function validate(host, token)
	local mod_invites = get_module(host, "invites");
	if not mod_invites then
		return nil, "mod_invites not loaded on " .. tostring(host);
	end
	local ok, invite, err = pcall(mod_invites.get, token);
	if not ok then
		return nil, "get() raised: " .. tostring(invite);
	end
	if not invite then
		return nil, tostring(err);
	end
	return invite;
end

local function register(host, invite, username, password, ip)
	local events = prosody.hosts[host].events;
	username = nodeprep(username);
	if not username or username == "" then
		return "failed: invalid username";
	end
	if usermanager.user_exists(username, host) then
		return "exists";
	end
	local registering = {
		username = username;
		password = password;
		host = host;
		validated_invite = invite;
		allowed = true;
		ip = ip or DEFAULT_IP;
		source = SOURCE;
	};
	events.fire_event("user-registering", registering);
	if not registering.allowed then
		local reason = registering.reason or (registering.error and registering.error.text);
		return "refused: " .. tostring(reason);
	end
	local ok, err = usermanager.create_user(username, password, host);
	if not ok then
		return "failed: " .. tostring(err);
	end
	events.fire_event("user-registered", {
		username = username;
		host = host;
		validated_invite = invite;
		source = SOURCE;
	});
	return "registered";
end

local console_env = module:shared("/*/admin_shell/env");
console_env.testfrontend = {};

-- luacheck: ignore 212/self

function console_env.testfrontend:register(host, token, username, password, ip)
	local invite, err = validate(host, token);
	if not invite then
		return true, "invalid: " .. err;
	end
	return true, register(host, invite, username, password, ip);
end

function console_env.testfrontend:open(host, token)
	local invite, err = validate(host, token);
	if not invite then
		return true, "invalid: " .. err;
	end
	form_counter = form_counter + 1;
	local id = host .. "#" .. form_counter;
	forms[id] = { host = host, invite = invite };
	return true, id;
end

-- `host` (optional) registers on another host than the one that validated the invite.
function console_env.testfrontend:submit(id, username, password, ip, host)
	local form = forms[id];
	if not form then
		return true, "failed: no such form";
	end
	return true, register(host or form.host, form.invite, username, password, ip);
end
