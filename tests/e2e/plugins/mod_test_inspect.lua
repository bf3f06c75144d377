-- Test-only helper for the end-to-end suite (never install it on a real server).
--
-- Read-only views of what the server has stored, through Prosody's own storage API
-- (so they work with every storage backend), as JSON for the tests:
--   testinspect:roster(host, user) → {"contact@host": {"subscription": ..., "ask": ...}, ...}
--   testinspect:roles(host, user)  → {"store": "roles"|"account_roles", "record": <raw record>,
--                                      "roles": [role names the account has explicitly]}
-- Every command answers "OK: <json>".

local storagemanager = require "core.storagemanager";
local usermanager = require "core.usermanager";
local json = require "util.json";

local console_env = module:shared("/*/admin_shell/env");
console_env.testinspect = {};

-- luacheck: ignore 212/self

-- The stored roster (not a session's copy), without the [false] metadata entry.
function console_env.testinspect:roster(host, user)
	local roster, err = storagemanager.open(host, "roster"):get(user);
	if err then
		return nil, tostring(err);
	end
	local items = {};
	for contact, item in pairs(roster or {}) do
		if type(contact) == "string" then
			items[contact] = { subscription = item.subscription or json.null, ask = item.ask or json.null };
		end
	end
	return true, json.encode(items);
end

-- Roles as stored: 0.12 keeps a set in keyval store `roles`; 13 keeps
-- { _default = primary, [secondary] = true } in `account_roles`.
function console_env.testinspect:roles(host, user)
	local store_name = usermanager.set_user_role and "account_roles" or "roles";
	local record, err = storagemanager.open(host, store_name):get(user);
	if err then
		return nil, tostring(err);
	end
	local names = {};
	if type(record) == "table" then
		for key, value in pairs(record) do
			if key == "_default" and type(value) == "string" then
				table.insert(names, value);
			elseif type(key) == "string" and key ~= "_default" and value == true then
				table.insert(names, key);
			end
		end
	end
	table.sort(names);
	return true, json.encode({ store = store_name, record = record or json.null, roles = names });
end
