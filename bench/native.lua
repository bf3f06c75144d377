-- Micro-benchmark of the native library from lua5.4, outside Prosody (`make bench-native`):
-- time per call (µs) of the exports on the preauth and registration paths, hot (in a
-- loop), and the invite index's own cost for N = 10,000 and 100,000 records: the time to
-- index them in one load() call, and its memory (RSS of a child process that indexed
-- them minus one that did not; in a server, the parse of the store file comes on top).
-- usage: lua5.4 bench/native.lua [build/lua5.4]
local lib_dir = arg[1] or "build/lua5.4";
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = lib_dir .. "/?.so;/usr/lib/prosody/?.so;" .. package.cpath;

local native = require "invites_register";
local clock = os.clock;
local HOST = "bench.test";
local STORE_FILE = os.tmpname(); -- the index checks this file's identity (stat) in stale()

local function rss_kb()
	for line in io.lines("/proc/self/status") do
		local kb = line:match("^VmRSS:%s+(%d+)");
		if kb then
			return tonumber(kb);
		end
	end
end

local function new_state()
	return (native.new({
		host = HOST; invite_only = true; require_encryption = false; token_attempts = 0;
		store_file = STORE_FILE;
	}));
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
local function token(i)
	local t, x = {}, i * 2654435761;
	for k = 1, 24 do
		local c = x % 64 + 1;
		t[k] = alphabet:sub(c, c);
		x = x // 3 + k * 7919;
	end
	return table.concat(t);
end

-- A mod_invites account-invite record, as stored.
local function record(tok)
	return {
		type = "register"; token = tok; reusable = false; allow_registration = true;
		expires = os.time() + 7 * 86400; created_at = os.time();
		uri = "xmpp:" .. HOST .. "?register;preauth=" .. tok .. ";ibr=y";
		landing_page = "https://" .. HOST .. "/invite?" .. tok;
	};
end

local function time(name, n, f)
	for _ = 1, math.min(n, 1000) do f(); end -- warm-up
	local t0 = clock();
	for _ = 1, n do f(); end
	print(("  %-44s %8.2f µs"):format(name, (clock() - t0) / n * 1e6));
end

print("hot calls (µs per call):");
local state = new_state();
state:load_begin();
local valid = token(1);
state:put(valid, "register", nil, os.time() + 3600, true, false, nil, nil, record(valid).uri, nil);
state:load_end();
local n = 200000;
time("preauth_gate(valid)", n, function () return state:preauth_gate(valid, "127.0.0.1", true, true); end);
time("preauth_judge(valid)", n, function () return state:preauth_judge(valid, "127.0.0.1", false); end);
time("stale() (one stat)", n, function () return state:stale(); end);
time("registering(true, valid, name)", n, function () return state:registering(true, valid, "alice"); end);
time("registering(false, nil, name): open", n, function () return state:registering(false, nil, "alice"); end);
time("claim + release", n, function () state:release(valid, state:claim(valid)); end);
time("put(token, …)", n, function ()
	return state:put(valid, "register", nil, os.time() + 3600, true, false, nil, nil, nil, nil);
end);

-- The index's memory: RSS of a process that built N records and indexed them, minus one
-- that built the same records only (each after dropping the records and a full GC).
local function indexed_process(count, with_index)
	local records = {};
	for i = 1, count do
		local tok = token(i + 1);
		records[tok] = record(tok);
	end
	local idx, took, indexed = new_state(), 0, 0;
	if with_index then
		local t0 = clock();
		idx:load_begin();
		idx:load(records);
		indexed = idx:load_end();
		took = clock() - t0;
	end
	records = nil; -- luacheck: ignore 311
	collectgarbage("collect");
	collectgarbage("collect");
	print(rss_kb(), indexed, took);
end

if arg[2] == "--index" then
	indexed_process(tonumber(arg[3]), arg[4] == "1");
	os.remove(STORE_FILE);
	os.exit(0);
end

print("the index: load() of N records in one call; RSS with the index minus without (MiB):");
for _, count in ipairs({ 10000, 100000 }) do
	local function child(with_index)
		local cmd = ("%q %q %q --index %d %d"):format(arg[-1] or "lua5.4", arg[0], lib_dir, count,
			with_index and 1 or 0);
		local out = assert(io.popen(cmd)):read("a");
		local rss, indexed, took = out:match("(%d+)%s+(%d+)%s+(%S+)");
		return tonumber(rss), tonumber(indexed), tonumber(took);
	end
	local without = child(false);
	local with, indexed, took = child(true);
	print(("  N = %7d: %d indexed in %.3f s, RSS %+.1f MiB (%.0f bytes per invite)"):format(
		count, indexed, took, (with - without) / 1024, (with - without) * 1024 / count));
end
os.remove(STORE_FILE);
