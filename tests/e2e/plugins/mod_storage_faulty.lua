-- Test-only storage driver for the end-to-end suite (never install it on a real server).
--
-- Wraps another storage driver and makes its reads or writes fail on command, the way a
-- broken disk or a lost database connection does: the method returns `nil, "error"`
-- instead of touching the data. Select it per store, e.g.
--   storage = { invite_token = "faulty" }      -- every other store: default_storage
--   storage_faulty_backend = "internal"         -- the wrapped driver (default:
--                                               -- default_storage, else "internal")
-- Faults are switched with a flag file, <data_path>/storage_faults, read on every call:
--   absent or empty → no faults; otherwise words: "read" (get, find, users, …) and/or
--   "write" (set, set_keys, append, delete, …), optionally "store=NAME" to fault only
--   that store. Every simulated failure is logged at debug level as "Simulated … failure".

local storagemanager = require "core.storagemanager";

local backend = module:get_option_string("storage_faulty_backend",
	module:get_option_string("default_storage", "internal"));
local flag_path = prosody.paths.data .. "/storage_faults";

local READS = { get = true, find = true, get_all = true, users = true, summary = true,
	ids = true, stores = true };
local WRITES = { set = true, set_keys = true, append = true, delete = true,
	delete_all = true, purge = true, trim = true };

local function faults()
	local f = io.open(flag_path);
	if not f then
		return nil;
	end
	local text = f:read("a") or "";
	f:close();
	return text;
end

local function failing(kind, store_name)
	local text = faults();
	if not text or not text:find(kind, 1, true) then
		return false;
	end
	local only = text:match("store=(%S+)");
	return only == nil or only == store_name;
end

-- A proxy whose methods fail while the flag says so; everything else passes through.
local function wrap(store, store_name)
	return setmetatable({}, {
		__index = function (_, key)
			local value = store[key];
			if type(value) ~= "function" then
				return value;
			end
			local kind = (READS[key] and "read") or (WRITES[key] and "write");
			return function (_, ...)
				if kind and failing(kind, store_name) then
					module:log("debug", "Simulated %s failure: %s:%s()", kind, store_name, key);
					return nil, "simulated " .. kind .. " failure";
				end
				return value(store, ...);
			end;
		end;
	});
end

local driver = {};

local function inner()
	local d = storagemanager.load_driver(module.host, backend);
	if not d then
		return nil, "storage_faulty: cannot load the " .. backend .. " driver";
	end
	return d;
end

function driver:open(store_name, typ) -- luacheck: ignore 212/self
	local d, err = inner();
	if not d then
		return nil, err;
	end
	local store, open_err = d:open(store_name, typ);
	if not store then
		-- e.g. "unsupported-store" for a map on internal storage: storagemanager then
		-- builds its map shim over our keyval store, which is wrapped.
		return nil, open_err;
	end
	return wrap(store, store_name);
end

function driver:stores(username, typ) -- luacheck: ignore 212/self
	local d, err = inner();
	if not d then
		return nil, err;
	end
	return d:stores(username, typ);
end

function driver:purge(username) -- luacheck: ignore 212/self
	local d, err = inner();
	if not d then
		return nil, err;
	end
	return d:purge(username);
end

module:provides("storage", driver);
