-- Shared fixtures for the busted specs: Prosody's own util libraries on the path, a
-- mocked `module` object and in-memory stores. Loaded with `require "spec.helpers"`.
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;

local helpers = {};

-- Prosody's C helpers (util/*.so) are built for the Lua that Prosody runs on (5.4 in
-- Debian). Under another Lua (`make test-lua-versions`) util.encodings fails to load;
-- then a pure-Lua stand-in provides it, and Prosody's own pure-Lua util.stanza and
-- util.jid run on top of it.
helpers.real_encodings = pcall(require, "util.encodings");
if not helpers.real_encodings then
	package.loaded["util.encodings"] = require "spec.encodings_standin";
end

helpers.st = require "util.stanza";

-- In-memory map store with Prosody's map-store API (get/set by user and key).
function helpers.map_store()
	local data = {};
	local store = { data = data, fail_reads = false, fail_writes = false };
	function store:get(user, key)
		if self.fail_reads then return nil, "simulated read failure"; end
		local map = data[user or false];
		return map and map[key];
	end
	function store:set(user, key, value)
		if self.fail_writes then return nil, "simulated write failure"; end
		data[user or false] = data[user or false] or {};
		data[user or false][key] = value;
		return true;
	end
	return store;
end

-- A keyval store (get/set by user).
function helpers.keyval_store()
	local data = {};
	return {
		data = data;
		get = function (_, user) return data[user]; end;
		set = function (_, user, value) data[user] = value; return true; end;
	};
end

-- Builds a fake `module` for plugin code: hooks, options, stores, logs.
function helpers.mock_module(opts)
	opts = opts or {};
	local m = {
		host = opts.host or "example.com";
		name = "invites_register";
		hooks = {};
		wrappers = {};
		logs = {};
		sent = {};
		timers = {};
		depended = {};
		options = opts.options or {};
		stores = { invite_token = helpers.map_store(), roles = helpers.keyval_store() };
		directory = opts.directory;
	};
	function m:hook(event, handler, priority)
		self.hooks[event] = self.hooks[event] or {};
		table.insert(self.hooks[event], { handler = handler, priority = priority or 0 });
		table.sort(self.hooks[event], function (a, b) return a.priority > b.priority; end);
	end
	function m:wrap_event(event, handler) self.wrappers[event] = handler; end
	function m:fire_event(event, data)
		for _, h in ipairs(self.hooks[event] or {}) do
			local ret = h.handler(data);
			if ret ~= nil then return ret; end
		end
	end
	function m:get_option(name) return self.options[name]; end
	function m:get_option_boolean(name)
		local v = self.options[name];
		if type(v) == "boolean" then return v; end
		return nil;
	end
	function m:log(level, fmt, ...) table.insert(self.logs, { level, fmt:format(...) }); end
	function m:open_store(name) return self.stores[name]; end
	function m:get_directory() return self.directory; end
	function m:depends(name) table.insert(self.depended, name); end
	function m:add_timer(delay, f) table.insert(self.timers, { delay, f }); end
	function m:send(stanza) table.insert(self.sent, stanza); end
	return m;
end

-- Loads lua/mod_invites_register.lua with `module` and `prosody` set as Prosody would.
function helpers.load_plugin(mod, overrides)
	local saved = {};
	for name, value in pairs(overrides or {}) do
		saved[name] = package.loaded[name];
		package.loaded[name] = value;
	end
	local env = setmetatable({ module = mod, prosody = { process_type = "prosody" } }, { __index = _G });
	local chunk = assert(loadfile("lua/mod_invites_register.lua", "t", env));
	local setfenv = rawget(_G, "setfenv"); -- Lua 5.1: loadfile takes no environment
	if setfenv then setfenv(chunk, env); end
	local ok, err = pcall(chunk);
	for name in pairs(overrides or {}) do
		package.loaded[name] = saved[name];
	end
	assert(ok, err);
	return env;
end

-- A session table like mod_c2s's for an unauthenticated stream.
function helpers.session(fields)
	local s = { type = "c2s_unauthed", host = "example.com", ip = "192.0.2.1", secure = true, sent = {} };
	function s.send(stanza) table.insert(s.sent, stanza); end
	for k, v in pairs(fields or {}) do s[k] = v; end
	return s;
end

return helpers;
