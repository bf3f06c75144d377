-- Test-only helper for the end-to-end suite (never install it on a real server).
--
-- Creates invites through mod_invites' own API, the way prosodyctl, the admin
-- shell and ad-hoc commands do, for the kinds that Prosody 0.12's command line
-- cannot make: bound to a username, contact (roster) invites, expired and
-- reusable ones. Exposed in the admin shell as `testinvite`, e.g.
--   prosodyctl shell 'testinvite:account("example.test", "alice", 3600)'
-- Each command answers "OK: <token>".

local get_module = require "core.modulemanager".get_module;

if prosody.process_type == "prosody" then
	module:depends("invites");
end

local function invites_on(host)
	local mod_invites = get_module(host, "invites");
	if not mod_invites then
		return nil, "mod_invites not loaded on " .. tostring(host);
	end
	return mod_invites;
end

local function token_of(invite, err)
	if not invite then return nil, err; end
	return true, invite.token;
end

local console_env = module:shared("/*/admin_shell/env");
console_env.testinvite = {};

-- luacheck: ignore 212/self

-- Account invite, optionally bound to `username`; a negative ttl makes it already expired.
function console_env.testinvite:account(host, username, ttl)
	local mod_invites, err = invites_on(host);
	if not mod_invites then return nil, err; end
	return token_of(mod_invites.create_account(username, nil, ttl));
end

-- Password reset invite for an existing (or not yet existing) account.
function console_env.testinvite:reset(host, username, ttl)
	local mod_invites, err = invites_on(host);
	if not mod_invites then return nil, err; end
	return token_of(mod_invites.create_account_reset(username, ttl));
end

-- Contact (roster) invite issued by `username`, with or without registration.
function console_env.testinvite:contact(host, username, allow_registration, ttl)
	local mod_invites, err = invites_on(host);
	if not mod_invites then return nil, err; end
	return token_of(mod_invites.create_contact(username, allow_registration, nil, ttl));
end

-- Group invite; with a ttl mod_invites makes it reusable until it expires.
function console_env.testinvite:group(host, groups, ttl)
	local mod_invites, err = invites_on(host);
	if not mod_invites then return nil, err; end
	return token_of(mod_invites.create_group(groups, nil, ttl));
end

-- Account invite carrying `additional_data` as given, e.g. { roles = { "prosody:admin" } }
-- (a list-shaped roles record, which 0.12's command line cannot make).
function console_env.testinvite:account_data(host, username, additional_data, ttl)
	local mod_invites, err = invites_on(host);
	if not mod_invites then return nil, err; end
	return token_of(mod_invites.create_account(username, additional_data, ttl));
end
