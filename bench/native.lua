-- Micro-benchmark of the native library from lua5.4: time per call (µs) of each export
-- on realistic inputs, and the bare cost of crossing the Lua/Rust boundary; hot (in a
-- loop) and cold (after walking 16 MB, as in a server where each registration runs
-- these calls once between password hashing and file I/O).
-- usage: lua5.4 bench/native.lua [build/lua5.4]   (run by `make bench-native`)
local lib_dir = arg[1] or "build/lua5.4";
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = lib_dir .. "/?.so;/usr/lib/prosody/?.so;" .. package.cpath;

local st = require "util.stanza";
local nodeprep = require "util.encodings".stringprep.nodeprep;
local native = require "invites_register";
local clock = os.clock;

local state = native.new({
	host = "example.com"; invite_only = true; require_encryption = true; token_attempts = 0;
	nodeprep = function (s) return nodeprep(s); end; stanza_mt = st.stanza_mt;
});

local fns = state:functions();
local preauth, preauth_finish = fns.preauth, fns.preauth_finish;

local TOKEN = "1ZL5eQaUpJb8GSyY4ebnQ6v6";
local iq = st.iq({ type = "set", id = "preauth-3c9a", to = "example.com" })
	:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = TOKEN }):up();
local presence = st.presence({ type = "subscribe", to = "juliet@example.com", from = "romeo@example.net/phone" })
	:tag("nick", { xmlns = "http://jabber.org/protocol/nick" }):text("Romeo"):up()
	:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = TOKEN }):up();
local function record()
	return {
		type = "register"; jid = "example.com"; token = TOKEN; allow_registration = true;
		uri = "xmpp:example.com?register;preauth=" .. TOKEN; created_at = os.time();
		expires = os.time() + 604800; additional_data = { groups = { "family" } };
	};
end
local rec = record();
local invite = { token = TOKEN, host = "example.com", _record = rec };

local results = {};
local big = {};
for i = 1, 2000000 do big[i] = i; end
local function evict()
	local sum = 0;
	for i = 1, #big, 8 do sum = sum + big[i]; end
	return sum;
end
local COLD_N = tonumber(os.getenv("BENCH_COLD_N")) or 40;
local function bench(name, n, f)
	for _ = 1, math.min(n, 1000) do f(); end -- warm up
	local t0 = clock();
	for _ = 1, n do f(); end
	local us = (clock() - t0) / n * 1e6;
	local cold = 0;
	collectgarbage("collect");
	collectgarbage("stop"); -- a GC step landing in one sample would swamp it
	for _ = 1, COLD_N do
		evict();
		local c0 = clock();
		f();
		cold = cold + (clock() - c0);
	end
	collectgarbage("restart");
	results[#results + 1] = ("| %-52s | %8.2f | %8.2f |"):format(name, us, cold / COLD_N * 1e6);
end

local N = tonumber(os.getenv("BENCH_N")) or 200000;
bench("reference: an empty Lua function", N, function () end);
bench("boundary: state:stats() (empty call + table)", N, function () state:stats(); end);
bench("boundary: sweep() (method call, no work)", N, function () state:sweep(); end);
bench("tostring(preauth iq) (Lua, for reference)", N, function () return tostring(iq); end);
bench("preauth(stanza, ip, secure, same_host) (C function)", N, function () preauth(iq, "192.0.2.1", true, true); end);
bench("preauth_finish(token, ip, record) valid (C function)", N, function () preauth_finish(TOKEN, "192.0.2.1", rec, nil); end);
bench("preauth_finish(token, ip, nil) invalid (C function)", N, function () preauth_finish(TOKEN, "192.0.2.1", nil, nil); end);
bench("st.reply (Lua, the valid preauth's reply)", N, function () st.reply(iq); end);
bench("lookup_token(invite) (C function)", N, function () fns.lookup_token(invite); end);
bench("registering(invite, username) (C function)", N, function () fns.registering(invite, "alice", false, nil); end);
bench("claim + release (C functions)", N, function () fns.release(invite, fns.claim(invite)); end);
bench("settle(invite, nil) (C function)", N, function () fns.settle(invite, nil); end);
bench("subscribe_token(presence)", N, function () state:subscribe_token(presence); end);
bench("subscribe_token(tostring(presence)) (quick-xml)", N, function () state:subscribe_token(tostring(presence)); end);
bench("contact_valid(token, expires)", N, function () state:contact_valid(TOKEN, rec.expires); end);
bench("roles({\"prosody:admin\"})", N, function () state:roles({ "prosody:admin" }); end);
bench("st.error_reply (Lua, for reference)", N, function () st.error_reply(iq, "cancel", "item-not-found", "x"); end);

print(("Native micro-benchmark, %s, %d calls each hot, %d cold (os.clock CPU time)"):format(_VERSION, N, COLD_N));
print("| call | hot µs/call | cold µs/call |");
print("|---|---:|---:|");
for _, line in ipairs(results) do print(line); end
