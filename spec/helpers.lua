-- Shared fixtures for the busted specs: Prosody's own util libraries on the path, a
-- mocked `module` object, in-memory stores and a stand-in invite file. Loaded with
-- `require "spec.helpers"`.
package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;

local helpers = {};

-- Prosody's C helpers (util/*.so) are built for the Lua that Prosody runs on (5.4 in
-- Debian). Under another Lua (`make test-lua-versions`) they fail to load; then pure-Lua
-- stand-ins provide util.encodings and util.time, and Prosody's own pure-Lua
-- util.stanza, util.jid, util.serialization and util.filters run on top of them.
helpers.real_encodings = pcall(require, "util.encodings");
if not helpers.real_encodings then
	package.loaded["util.encodings"] = require "spec.encodings_standin";
end
if not pcall(require, "util.time") then
	package.loaded["util.time"] = { now = os.clock };
end

helpers.st = require "util.stanza";

helpers.LIB_DIR = os.getenv("INVITES_REGISTER_LIB_DIR") or "build/lua5.4";

-- The host's invite "file": the plugin's index checks its identity, so a spec simulates a
-- write of the store by another process with `helpers.touch(path)`.
function helpers.store_file()
	local path = os.tmpname();
	os.remove(path);
	return path;
end

function helpers.touch(path, content)
	local scratch = path .. "~";
	local f = assert(io.open(scratch, "w"));
	f:write(content or tostring(os.clock()) .. tostring({}));
	f:close();
	assert(os.rename(scratch, path));
end

-- In-memory map store with Prosody's map-store API, sharing its data with a keyval view.
function helpers.map_store()
	local data = {};
	local store = { data = data, fail_reads = false, fail_writes = false, writes = 0, remove = {} };
	function store:get(user, key)
		if self.fail_reads then return nil, "simulated read failure"; end
		local map = data[user or false];
		return map and map[key];
	end
	function store:set_keys(user, keys)
		if self.fail_writes then return nil, "simulated write failure"; end
		self.writes = self.writes + 1;
		local map = data[user or false] or {};
		for k, v in pairs(keys) do
			if v == self.remove then v = nil; end
			map[k] = v;
		end
		data[user or false] = next(map) and map or nil;
		return true;
	end
	function store:set(user, key, value)
		return self:set_keys(user, { [key] = value == nil and self.remove or value });
	end
	-- The keyval view: get(user) is the user's whole map, users() the users with one.
	store.keyval = {
		get = function (_, user)
			if store.fail_reads then return nil, "simulated read failure"; end
			return data[user or false];
		end;
		-- A stateful iterator, as Prosody's drivers return (lfs.dir, SQL result sets).
		users = function ()
			local users = {};
			for user in pairs(data) do
				if user then users[user] = true; end
			end
			return next, users, nil;
		end;
	};
	return store;
end

-- A keyval store (get/set by user, users()).
function helpers.keyval_store()
	local data = {};
	local store = { data = data, fail_writes = false };
	function store.get(_, user) return data[user]; end
	function store:set(user, value)
		if self.fail_writes then return nil, "simulated write failure"; end
		data[user] = value;
		return true;
	end
	function store.users()
		local users = {};
		for user in pairs(data) do users[#users + 1] = user; end
		local i = 0;
		return function () i = i + 1; return users[i]; end;
	end
	return store;
end

-- An archive store (append/find/delete of the whole archive), like the internal driver's.
function helpers.archive_store()
	local store = { items = {}, fail_writes = false };
	function store:append(_, _, value, when)
		if self.fail_writes then return nil, "simulated write failure"; end
		table.insert(self.items, { value = value, when = when });
		return tostring(#self.items);
	end
	function store:find()
		local i = 0;
		return function ()
			i = i + 1;
			local item = self.items[i];
			if item then return tostring(i), item.value, item.when; end
		end;
	end
	function store:delete()
		self.items = {};
		return true;
	end
	return store;
end

-- Metric families whose values the specs can read: family.values[label] (nil label for
-- families without labels).
local function metric_family()
	local family = { values = {} };
	function family.with_labels(_, label)
		local key = label or "";
		return {
			add = function (_, n) family.values[key] = (family.values[key] or 0) + n; end;
			set = function (_, n) family.values[key] = n; end;
		};
	end
	return family;
end

-- Builds a fake `module` for plugin code: hooks, options, stores, logs, timers, metrics.
function helpers.mock_module(opts)
	opts = opts or {};
	local invite_token = helpers.map_store();
	local m = {
		host = opts.host or "example.com";
		name = "invites_register";
		hooks = {};
		global_hooks = {};
		wrappers = {};
		logs = {};
		sent = {};
		timers = {};
		depended = {};
		items = {};
		metrics = {};
		shared_tables = {};
		options = opts.options or {};
		stores = {
			invite_token = invite_token;
			roles = helpers.keyval_store();
			invites_register_consumed = opts.markers or helpers.archive_store();
		};
		directory = opts.directory;
	};
	function m:hook(event, handler, priority)
		self.hooks[event] = self.hooks[event] or {};
		table.insert(self.hooks[event], { handler = handler, priority = priority or 0 });
		table.sort(self.hooks[event], function (a, b) return a.priority > b.priority; end);
	end
	function m:hook_global(event, handler) self.global_hooks[event] = handler; end
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
	function m:open_store(name, kind)
		if name == "invite_token" and kind ~= "map" then
			return self.stores.invite_token.keyval;
		end
		return self.stores[name];
	end
	function m:get_directory() return self.directory; end
	function m:depends(name) table.insert(self.depended, name); end
	function m:add_timer(delay, f)
		local t = { delay = delay, f = f };
		table.insert(self.timers, t);
		return t;
	end
	function m:send(stanza) table.insert(self.sent, stanza); end
	function m:metric(kind, name)
		local family = metric_family();
		self.metrics[name] = family;
		family.kind = kind;
		return family;
	end
	function m:add_item(kind, item)
		self.items[kind] = self.items[kind] or {};
		table.insert(self.items[kind], item);
	end
	function m:shared(path)
		self.shared_tables[path] = self.shared_tables[path] or {};
		return self.shared_tables[path];
	end
	-- Runs the timers due (all of them, once; those returning a number stay scheduled).
	function m:run_timers()
		local due = self.timers;
		self.timers = {};
		for _, t in ipairs(due) do
			local again = t.f();
			if type(again) == "number" then
				table.insert(self.timers, { delay = again, f = t.f });
			end
		end
	end
	-- The value a metric family holds for `label` (or 0).
	function m:metric_value(name, label)
		local family = self.metrics[name];
		return family and family.values[label or ""] or 0;
	end
	-- Log lines at `level` containing `text`.
	function m:logged(level, text)
		local n = 0;
		for _, l in ipairs(self.logs) do
			if l[1] == level and l[2]:find(text, 1, true) then n = n + 1; end
		end
		return n;
	end
	return m;
end

-- Loads lua/mod_invites_register.lua with `module` and `prosody` set as Prosody would.
function helpers.load_plugin(mod, overrides)
	local saved = {};
	for name, value in pairs(overrides or {}) do
		saved[name] = package.loaded[name];
		package.loaded[name] = value;
	end
	local env = setmetatable({
		module = mod;
		prosody = { process_type = "prosody", paths = {} };
	}, { __index = _G });
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
