-- Bench-only helper for bench/bench.py (never install it on a real server).
--
-- Creates many account invites quickly through mod_invites' own create_account()
-- (the records are exactly what prosodyctl / the admin shell would store; each fires
-- mod_invites' `invite-created`), and drops leftovers. Exposed in the admin shell as
-- `benchinvite`:
--   benchinvite:create("example.test", 10000)               --> "OK: 10000"
--   benchinvite:create("example.test", 64, true)            --> "OK: tok1 tok2 ..."
--   benchinvite:create("example.test", 10000, false, nil, "r")
--       --> "OK: 10000", invites bound to the usernames r1 ... r10000
--   benchinvite:drop("example.test", "tok1 tok2")           --> "OK: 2"
--
-- With internal storage every map-store write re-reads and rewrites the host's
-- whole invite_token file, so N single writes cost O(N²). While the loop runs,
-- mod_invites' private `token_storage` upvalue is swapped for a collector and all
-- records are then written with one set_keys() call (one file write, or one SQL
-- transaction). The loop is synchronous (no yield), so nothing else can observe
-- the swap; the original store is restored even if create_account raises. If the
-- upvalue cannot be found (another Prosody version), it falls back to plain
-- create_account() calls.
-- luacheck: globals module prosody

local get_module = require "core.modulemanager".get_module;

if prosody.process_type == "prosody" then
	module:depends("invites");
end

local function find_upvalue(f, name)
	for i = 1, 255 do
		local n, v = debug.getupvalue(f, i);
		if n == nil then
			return nil;
		end
		if n == name then
			return i, v;
		end
	end
	return nil;
end

-- `n` account invites on `host`, bound to the usernames `prefix`1 ... `prefix`n when a
-- prefix is given; returns their tokens.
local function create_many(host, n, ttl, prefix)
	local mod_invites = get_module(host, "invites");
	if not mod_invites then
		return nil, "mod_invites not loaded on " .. tostring(host);
	end
	local create_account = mod_invites.create_account;
	local function username(i)
		return prefix and prefix .. i or nil;
	end
	local tokens = {};
	local ci_index, create_invite = find_upvalue(create_account, "create_invite");
	local ts_index, token_storage;
	if ci_index then
		ts_index, token_storage = find_upvalue(create_invite, "token_storage");
	end
	if not ts_index or type(token_storage) ~= "table" or not token_storage.set_keys then
		module:log("warn", "mod_invites internals not found, creating %d invites one write each", n);
		for i = 1, n do
			local invite, cerr = create_account(username(i), nil, ttl);
			if not invite then
				return nil, cerr;
			end
			tokens[i] = invite.token;
		end
		return tokens;
	end
	local batch = {};
	local collector = {
		set = function (_, user, key, value)
			assert(user == nil, "bench collector only takes host-level records");
			batch[key] = value;
			return true;
		end;
	};
	debug.setupvalue(create_invite, ts_index, collector);
	local ok, res = pcall(function ()
		for i = 1, n do
			local invite = assert(create_account(username(i), nil, ttl));
			tokens[i] = invite.token;
		end
	end);
	debug.setupvalue(create_invite, ts_index, token_storage);
	if not ok then
		return nil, tostring(res);
	end
	local written, werr = token_storage:set_keys(nil, batch);
	if not written then
		return nil, "store failed: " .. tostring(werr);
	end
	return tokens;
end

local console_env = module:shared("/*/admin_shell/env");
console_env.benchinvite = {};

-- luacheck: ignore 212/self

-- Create `n` account invites on `host` (bound to `prefix`1 ... when a prefix is given);
-- with `want_tokens` answer the tokens, space-separated.
function console_env.benchinvite:create(host, n, want_tokens, ttl, prefix)
	n = tonumber(n);
	if not n or n < 0 then
		return nil, "n must be a non-negative number";
	end
	local t0 = os.clock();
	local tokens, err = create_many(host, n, ttl, prefix);
	if not tokens then
		return nil, err;
	end
	module:log("info", "created %d invites on %s in %.3f s CPU", n, host, os.clock() - t0);
	if want_tokens then
		return true, table.concat(tokens, " ");
	end
	return true, tostring(#tokens);
end

-- Delete the host records of the given (space-separated) tokens in one write.
function console_env.benchinvite:drop(host, tokens)
	local store = module:context(host):open_store("invite_token", "map");
	local keys, n = {}, 0;
	for token in tostring(tokens):gmatch("%S+") do
		keys[token] = store.remove;
		n = n + 1;
	end
	if n == 0 then
		return true, "0";
	end
	local ok, err = store:set_keys(nil, keys);
	if not ok then
		return nil, tostring(err);
	end
	return true, tostring(n);
end
