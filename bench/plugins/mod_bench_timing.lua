-- Bench-only instrumentation for bench/bench.py --timing (never install it on a real server).
--
-- Splits the server's time between the invite module's handlers and storage: wraps
-- the events the module takes part in (around all their handlers, stock or ours
-- alike) and the methods of the `invite_token` map store, and accumulates CPU time
-- (os.clock) and wall time per name. Read and reset from the admin shell:
--   benchtiming:report()   --> "OK: name count cpu_us wall_us; ..."
--   benchtiming:reset()
-- luacheck: globals module prosody

local now = require "util.time".now;
local clock = os.clock;

local acc = {};

local function add(name, cpu, wall)
	local a = acc[name];
	if not a then
		a = { n = 0, cpu = 0, wall = 0 };
		acc[name] = a;
	end
	a.n = a.n + 1;
	a.cpu = a.cpu + cpu;
	a.wall = a.wall + wall;
end

local function timed_event(event_name, label)
	module:wrap_event(event_name, function (handlers, name, data)
		local c0, w0 = clock(), now();
		local ret = handlers(name, data);
		add(label, clock() - c0, now() - w0);
		return ret;
	end);
end

-- The preauth event also times the reply's origin.send (serialisation, filters, write).
module:wrap_event("stanza/iq/urn:xmpp:pars:0:preauth", function (handlers, name, data)
	local origin = data.origin;
	local send = origin.send;
	origin.send = function (...)
		local c0, w0 = clock(), now();
		local r1, r2 = send(...);
		add("origin.send in preauth", clock() - c0, now() - w0);
		return r1, r2;
	end;
	local c0, w0 = clock(), now();
	local ret = handlers(name, data);
	add("event preauth IQ (all handlers, incl. store + send)", clock() - c0, now() - w0);
	origin.send = send;
	return ret;
end);
timed_event("stanza/iq/jabber:iq:register:query", "event IBR IQ (all handlers, incl. hashing + account store)");
timed_event("user-registering", "event user-registering (all voters)");
timed_event("user-registered", "event user-registered (all handlers)");
timed_event("stream-features", "event stream-features (all handlers)");

-- The invite_token store's method table is shared by every store of its driver
-- (internal: storagemanager's map shim; SQL: mod_storage_sql's map_store); only calls
-- on the invite_token store are counted.
if prosody.process_type == "prosody" then
	local store = module:open_store("invite_token", "map");
	local methods = getmetatable(store).__index;
	if type(methods) == "table" and not methods._bench_timing then
		methods._bench_timing = true;
		local depth = 0;
		-- Not set_keys: neither module calls it (SQL's set() does, nested, and is counted
		-- as set); the bench's own token creation and cleanup use it and must not count.
		for _, method in ipairs({ "get", "set" }) do
			local orig = methods[method];
			if orig then
				methods[method] = function (self, ...)
					local name = self.store or (self.keyval_store and self.keyval_store.store);
					if name ~= "invite_token" or depth > 0 then
						return orig(self, ...);
					end
					depth = depth + 1;
					local c0, w0 = clock(), now();
					local r1, r2, r3 = orig(self, ...);
					add("store invite_token:" .. method, clock() - c0, now() - w0);
					depth = depth - 1;
					return r1, r2, r3;
				end;
			end
		end
	end
end

local console_env = module:shared("/*/admin_shell/env");
console_env.benchtiming = {};

-- luacheck: ignore 212/self
function console_env.benchtiming:report()
	local parts = {};
	for name, a in pairs(acc) do
		parts[#parts + 1] = ("%s|%d|%.0f|%.0f"):format(name, a.n, a.cpu * 1e6, a.wall * 1e6);
	end
	return true, table.concat(parts, ";");
end

function console_env.benchtiming:reset()
	acc = {};
	return true, "reset";
end

-- In-server step profile of the preauth hot path (same heap and GC as the load runs):
--   benchtiming:preauth_steps("bench.test", "TOKEN", 20000)
-- Calls the loaded module's own preauth handler (stock or ours, whatever its internal
-- API) with a stub session whose send() does nothing, and times it against its parts
-- and references: the store read, st.reply, tostring(stanza), and for ours its decision
-- (judge_preauth: the index check and the native calls). Also the Lua bytes allocated
-- per call (GC stopped while counting).
local st = require "util.stanza";

local function upvalues(f)
	local u = {};
	for i = 1, 255 do
		local n, v = debug.getupvalue(f, i);
		if n == nil then break; end
		u[n] = v;
	end
	return u;
end

function console_env.benchtiming:preauth_steps(host, token, n)
	n = tonumber(n) or 20000;
	local map = prosody.hosts[host].events._event_map["stanza/iq/urn:xmpp:pars:0:preauth"];
	local handler, up;
	for h in pairs(map or {}) do
		local u = upvalues(h);
		if u.judge_preauth or u.invites then handler, up = h, u; end
	end
	if not handler then return nil, "no preauth handler found"; end
	local stanza = st.iq({ type = "set", id = "p1" })
		:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = token }):up();
	local origin = {
		type = "c2s_unauthed"; host = host; ip = "127.0.0.1"; secure = false;
		send = function () return true; end; log = function () end;
	};
	local event = { origin = origin, stanza = stanza };
	local steps = {};
	local function time(name, f)
		for _ = 1, math.min(n, 1000) do f(); end
		collectgarbage("collect");
		local kb0 = collectgarbage("count");
		collectgarbage("stop");
		f();
		local bytes = (collectgarbage("count") - kb0) * 1024;
		collectgarbage("restart");
		local c0 = clock();
		for _ = 1, n do f(); end
		steps[#steps + 1] = ("%s|%.2f|%.0f"):format(name, (clock() - c0) / n * 1e6, bytes);
	end
	local store = module:context(host):open_store("invite_token", "map");
	time("whole preauth handler (send stubbed)", function () return handler(event); end);
	time("  of which store:get(nil, token)", function () return store:get(nil, token); end);
	if up.invites then
		time("  of which invites.get(token) (incl. store:get)", function () return up.invites.get(token); end);
	end
	if up.judge_preauth then
		time("  of which judge_preauth(origin, token) (index)", function () return up.judge_preauth(origin, token); end);
	end
	time("reference: st.reply(stanza)", function () return st.reply(stanza); end);
	time("reference: tostring(stanza)", function () return tostring(stanza); end);
	return true, table.concat(steps, ";");
end
