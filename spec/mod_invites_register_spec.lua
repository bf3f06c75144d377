-- The Lua plugin with a mocked `module` and the real native library: hooks, fail-closed
-- loading, the invite index against a stand-in store file, the registration flow,
-- batched consumption, reservation, the pre-filled form, cleanup, metrics and roles.
local helpers = require "spec.helpers";
local st = helpers.st;
local filters = require "util.filters";

local function fake_modulemanager(loaded, modules)
	return {
		is_loaded = function (_, name) return loaded[name] or false; end;
		get_module = function (host, name) return modules[host .. "/" .. name]; end;
	};
end

local function fake_rostermanager(calls)
	local function record(name)
		return function (...)
			table.insert(calls, { name, ... });
			return true;
		end;
	end
	return setmetatable({}, { __index = function (_, name) return record(name); end });
end

-- Loads the plugin. opts: directory, options, loaded, usermanager, driver ("internal" or
-- "sql"), records (token → record, stored before the load), markers (archive store).
-- Returns the mock module, the plugin's environment and the roster calls.
local function load(opts)
	opts = opts or {};
	local mod = helpers.mock_module({ directory = opts.directory or helpers.LIB_DIR, options = opts.options,
		markers = opts.markers });
	local file = helpers.store_file();
	mod.file = file;
	for token, record in pairs(opts.records or {}) do
		mod.stores.invite_token:set(nil, token, record);
	end
	local calls, modules = {}, {};
	local env = helpers.load_plugin(mod, {
		["core.modulemanager"] = fake_modulemanager(opts.loaded or { register_ibr = true }, modules);
		["core.rostermanager"] = fake_rostermanager(calls);
		["core.usermanager"] = opts.usermanager or {};
		["core.storagemanager"] = { get_driver = function () return {}, opts.driver or "internal"; end };
		["util.datamanager"] = { getpath = function () return file; end };
	});
	modules[mod.host .. "/invites_register"] = env;
	return mod, env, calls;
end

local function record(token, fields)
	local r = { type = "register", jid = "example.com", token = token, expires = os.time() + 3600,
		uri = "xmpp:example.com?register;preauth=" .. token, allow_registration = true };
	for k, v in pairs(fields or {}) do r[k] = v; end
	return r;
end

-- An invite written by another process: the store and its file change.
local function add_behind(mod, token, fields)
	mod.stores.invite_token:set(nil, token, record(token, fields));
	helpers.touch(mod.file);
end

-- An invite made by mod_invites in this process: `invite-created`, then its write.
local function create(mod, token, fields)
	local invite = record(token, fields);
	mod:fire_event("invite-created", invite);
	mod.stores.invite_token:set(nil, token, invite);
	helpers.touch(mod.file);
	return invite;
end

local function session(fields)
	local s = helpers.session(fields);
	filters.initialize(s);
	function s.send(stanza)
		table.insert(s.sent, s.filter("stanzas/out", stanza));
	end
	return s;
end

local function preauth(mod, s, token)
	local iq = st.iq({ type = "set", id = "p1" }):tag("preauth", { xmlns = "urn:xmpp:pars:0", token = token }):up();
	local handled = mod:fire_event("stanza/iq/urn:xmpp:pars:0:preauth", { origin = s, stanza = iq });
	assert.is_true(handled);
	return s.sent[#s.sent];
end

local function condition(reply)
	return reply.attr.type == "error" and reply.tags[1].tags[1].name or reply.attr.type;
end

-- Runs the IBR flow as mod_register_ibr would, inside the module's wrapper: registering,
-- then registered if allowed and `succeeds` is not false (e.g. the name is taken).
local function register(mod, s, username, succeeds)
	local event = { username = username, host = mod.host, session = s, allowed = true };
	local iq = st.iq({ type = "set", id = "r1" }):tag("query", { xmlns = "jabber:iq:register" }):up();
	mod.wrappers["stanza/iq/jabber:iq:register:query"](function ()
		mod:fire_event("user-registering", event);
		if event.allowed and succeeds ~= false then
			mod:fire_event(event.allow_reset and "user-password-reset" or "user-registered",
				{ username = username, host = mod.host, session = s });
		end
		return true;
	end, "stanza/iq/jabber:iq:register:query", { origin = s, stanza = iq });
	return event;
end

-- A web front-end's registration (no IBR wrapper around it): mod_invites' object.
local function frontend(mod, token, username)
	local invite = { token = token, type = "register", reusable = false };
	local event = { username = username, host = mod.host, validated_invite = invite, allowed = true };
	mod:fire_event("user-registering", event);
	if event.allowed then
		mod:fire_event("user-registered", { username = username, host = mod.host, validated_invite = invite });
	end
	return event;
end

-- Writes the batch of used tokens (its timer).
local flush = function (mod) mod:run_timers(); end

describe("mod_invites_register", function ()
	describe("#load()", function ()
		it("should depend on invites and register_ibr when invite-only", function ()
			local mod = load();
			assert.same({ "invites", "register_ibr" }, mod.depended);
		end);
		it("should not depend on register_ibr when not invite-only", function ()
			local mod = load({ options = { registration_invite_only = false } });
			assert.same({ "invites" }, mod.depended);
		end);
		it("should fail closed without the native library", function ()
			local mod = load({ directory = "/nonexistent" });
			assert.equal(1, mod:logged("error", "Cannot load the native library"));
			assert.equal(1, #mod.logs);
			assert.is_nil(mod.hooks["stream-features"]);
			assert.is_nil(mod.hooks["stanza/iq/urn:xmpp:pars:0:preauth"]);
			local event = { username = "a", allowed = true };
			mod:fire_event("user-registering", event);
			assert.is_false(event.allowed);
			assert.equal("Registration is temporarily unavailable", event.reason);
			assert.equal(1, mod:metric_value("registrations", "unavailable"));
		end);
		it("should log an error for each bad option", function ()
			local mod = load({ options = { invites_register_token_attempts = -3,
				invites_register_throttle_ipv6_prefix = 200, invites_register_delete_delay = "soon" } });
			assert.equal(1, mod:logged("error", "invites_register_token_attempts"));
			assert.equal(1, mod:logged("error", "invites_register_throttle_ipv6_prefix"));
			assert.equal(1, mod:logged("error", "invites_register_delete_delay"));
		end);
		it("should register both shell commands for Prosody 13 and 0.12", function ()
			local mod = load();
			local names = {};
			for _, item in ipairs(mod.items["shell-command"]) do
				assert.equal("invites_register", item.section);
				assert.equal("host", item.host_selector);
				names[#names + 1] = item.name;
			end
			table.sort(names);
			assert.same({ "cleanup", "status" }, names);
			local env = mod.shared_tables["/*/admin_shell/env"];
			assert.is_function(env.invites_register.cleanup);
			assert.is_function(env.invites_register.status);
		end);
	end);

	describe("#stream-features", function ()
		local function features(mod, s)
			local f = st.stanza("features");
			mod:fire_event("stream-features", { origin = s, features = f });
			return f;
		end
		it("should advertise both features on secure unauthenticated streams", function ()
			local f = features(load(), session());
			assert.equal(2, #f.tags);
			assert.equal("<register xmlns='urn:xmpp:invite'/>", tostring(f.tags[1]));
			assert.equal("<register xmlns='urn:xmpp:ibr-token:0'/>", tostring(f.tags[2]));
		end);
		it("should advertise nothing on plaintext, after login, or without IBR", function ()
			assert.equal(0, #features(load(), session({ secure = false })).tags);
			assert.equal(0, #features(load(), session({ type = "c2s" })).tags);
			assert.equal(0, #features(load({ loaded = {} }), session()).tags);
		end);
	end);

	describe("#preauth", function ()
		it("should answer with st.reply and store a plain invite table on the session", function ()
			local mod = load({ records = { T = record("T", { additional_data = { groups = { "g1" } } }) } });
			local s = session();
			local iq = st.iq({ type = "set", id = "q'7", to = "example.com", from = "c@example.net/r" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "T" }):up();
			assert.is_true(mod:fire_event("stanza/iq/urn:xmpp:pars:0:preauth", { origin = s, stanza = iq }));
			assert.equal(tostring(st.reply(iq)), tostring(s.sent[1]));
			local keys = {};
			for k in pairs(s.validated_invite) do keys[#keys + 1] = k; end
			table.sort(keys);
			assert.same({ "additional_data", "host", "reusable", "token", "type", "uri" }, keys);
			local invite = s.validated_invite;
			assert.equal("register", invite.type);
			assert.equal("xmpp:example.com?register;preauth=T", invite.uri);
			assert.same({ groups = { "g1" } }, invite.additional_data);
			assert.is_false(invite.reusable);
			assert.is_function(invite.use);
			assert.equal(1, mod:metric_value("preauth", "valid"));
		end);
		it("should give every session its own copy of additional_data", function ()
			local mod = load({ records = { T = record("T", { additional_data = { groups = { "g1" } } }) } });
			local one, two = session(), session();
			preauth(mod, one, "T");
			one.validated_invite.additional_data.groups[1] = "changed";
			preauth(mod, two, "T");
			assert.same({ groups = { "g1" } }, two.validated_invite.additional_data);
		end);
		it("should name the inviter of a roster invite", function ()
			local mod = load({ records = { R = record("R", { type = "roster", jid = "juliet@example.com",
				allow_registration = "true", uri = "xmpp:juliet@example.com?roster;preauth=R;ibr=y" }) } });
			local s = session();
			preauth(mod, s, "R");
			assert.equal("juliet", s.validated_invite.inviter);
			assert.equal("juliet", s.validated_invite.username);
			assert.equal("xmpp:juliet@example.com?roster;preauth=R;ibr=y", s.validated_invite.uri);
		end);
		it("should refuse unknown tokens with item-not-found and count them", function ()
			local mod = load();
			local reply = preauth(mod, session(), "bogus");
			assert.equal("item-not-found", condition(reply));
			assert.equal("The provided token is invalid or expired", reply.tags[1]:get_child_text("text",
				"urn:ietf:params:xml:ns:xmpp-stanzas"));
			assert.equal(1, mod:metric_value("preauth", "invalid"));
		end);
		it("should not clear an earlier valid invite on a later failure", function ()
			local mod = load({ records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			assert.equal("item-not-found", condition(preauth(mod, s, "bogus")));
			assert.equal("T", s.validated_invite.token);
		end);
		it("should never report valid when an SQL read fails", function ()
			local mod = load({ driver = "sql", records = { T = record("T") } });
			mod.stores.invite_token.fail_reads = true;
			local s = session();
			assert.equal("item-not-found", condition(preauth(mod, s, "T")));
			assert.is_nil(s.validated_invite);
			assert.equal(1, mod:logged("warn", "Failed to read invite token"));
		end);
		it("should judge from the index, not from a read per preauth", function ()
			local mod = load();
			-- Written to the store without changing its file: the index does not see it.
			mod.stores.invite_token:set(nil, "T", record("T"));
			assert.equal("item-not-found", condition(preauth(mod, session(), "T")));
			helpers.touch(mod.file);
			assert.equal("result", condition(preauth(mod, session(), "T")));
		end);
		it("should see invites written and deleted by another process", function ()
			local mod = load();
			add_behind(mod, "T");
			assert.equal("result", condition(preauth(mod, session(), "T")));
			mod.stores.invite_token:set(nil, "T", nil);
			helpers.touch(mod.file);
			assert.equal("item-not-found", condition(preauth(mod, session(), "T")));
		end);
		it("should know invites created in this process without a reload", function ()
			local mod = load();
			create(mod, "C");
			-- Were the store re-read, this record would vanish from the index.
			mod.stores.invite_token.data[false] = nil;
			assert.equal("result", condition(preauth(mod, session(), "C")));
		end);
		it("should not index an announced invite that was never written", function ()
			local mod = load();
			mod:fire_event("invite-created", record("W"));
			mod:run_timers();
			assert.equal("item-not-found", condition(preauth(mod, session(), "W")));
		end);
		it("should read the store on SQL instead of trusting the index", function ()
			local mod = load({ driver = "sql" });
			mod.stores.invite_token:set(nil, "T", record("T"));
			assert.equal("result", condition(preauth(mod, session(), "T")));
		end);
	end);

	describe("#user-registering", function ()
		it("should consume a single-use token once and delete it with the next batch", function ()
			local mod = load({ records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			assert.is_true(register(mod, s, "alice").allowed);
			assert.equal(1, mod:metric_value("registrations", "invited"));
			assert.equal(1, mod:metric_value("consumed"));
			local second = register(mod, s, "bob");
			assert.is_false(second.allowed);
			assert.equal("The invite token is no longer valid", second.reason);
			assert.equal(1, mod:metric_value("registrations", "used"));
			assert.is_not_nil(mod.stores.invite_token:get(nil, "T"), "deleted with the batch");
			local log = mod.stores.invites_register_consumed;
			assert.equal(1, #log.items, "marked durably");
			assert.equal("T", log.items[1].value.attr.token);
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
			assert.equal(0, #log.items);
		end);
		it("should delete at once with invites_register_delete_delay = 0", function ()
			local mod = load({ records = { T = record("T") }, options = { invites_register_delete_delay = 0 } });
			local s = session();
			preauth(mod, s, "T");
			assert.is_true(register(mod, s, "alice").allowed);
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
			assert.equal(0, #mod.stores.invites_register_consumed.items);
		end);
		it("should write one batch for many used tokens", function ()
			local records = {};
			for i = 1, 5 do records["T" .. i] = record("T" .. i); end
			local mod = load({ records = records });
			local writes = mod.stores.invite_token.writes;
			for i = 1, 5 do
				local s = session();
				preauth(mod, s, "T" .. i);
				assert.is_true(register(mod, s, "user" .. i).allowed);
			end
			flush(mod);
			assert.equal(writes + 1, mod.stores.invite_token.writes);
			assert.is_nil(next(mod.stores.invite_token.data));
		end);
		it("should retry a batch whose write failed, refusing its tokens meanwhile", function ()
			local mod = load({ records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			register(mod, s, "alice");
			mod.stores.invite_token.fail_writes = true;
			flush(mod);
			assert.equal(1, mod:logged("error", "Failed to delete 1 used invite tokens"));
			assert.equal("item-not-found", condition(preauth(mod, session(), "T")));
			mod.stores.invite_token.fail_writes = false;
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
		end);
		it("should retry a failed delete on SQL, refusing the token meanwhile", function ()
			local mod = load({ driver = "sql", records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			mod.stores.invite_token.fail_writes = true;
			assert.is_true(register(mod, s, "alice").allowed);
			assert.equal(1, mod:logged("error", "Failed to delete used invite token"));
			mod.stores.invite_token.fail_writes = false;
			assert.is_false(register(mod, session(), "bob").allowed);
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
		end);
		it("should write the batch at once when the used-token log is full", function ()
			local markers = helpers.archive_store();
			local mod = load({ records = { T = record("T"), U = record("U") }, markers = markers });
			local s = session();
			preauth(mod, s, "T");
			assert.is_true(register(mod, s, "alice").allowed);
			markers.fail_writes = true;
			local other = session();
			preauth(mod, other, "U");
			assert.is_true(register(mod, other, "bob").allowed);
			assert.equal(1, mod:logged("warn", "Cannot mark used invite token"));
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
			assert.is_nil(mod.stores.invite_token:get(nil, "U"));
		end);
		it("should delete tokens marked before a restart", function ()
			local markers = helpers.archive_store();
			markers:append(nil, nil, st.stanza("consumed", { token = "M", host = "1" }), os.time());
			local mod = load({ records = { M = record("M") }, markers = markers });
			assert.equal("item-not-found", condition(preauth(mod, session(), "M")));
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get(nil, "M"));
			assert.equal(0, #markers.items);
		end);
		it("should release the claim when IBR fails after allowing", function ()
			local mod = load({ records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			assert.is_true(register(mod, s, "taken", false).allowed);
			assert.is_true(register(mod, s, "alice").allowed);
		end);
		it("should not claim when a later voter refuses", function ()
			local mod = load({ records = { F = record("F") } });
			local refuse = true;
			mod:hook("user-registering", function (event)
				if refuse then event.allowed = false; end
			end, -10);
			-- A front-end: no IBR wrapper gives a claim back.
			assert.is_false(frontend(mod, "F", "alice").allowed);
			refuse = false;
			assert.is_true(frontend(mod, "F", "alice").allowed);
		end);
		it("should judge a front-end invite by the store and refuse it once used", function ()
			local mod = load({ records = { F = record("F") } });
			assert.is_true(frontend(mod, "F", "alice").allowed);
			local again = frontend(mod, "F", "bob");
			assert.is_false(again.allowed);
			assert.equal("The invite token is no longer valid", again.reason);
			flush(mod);
			assert.is_false(frontend(mod, "F", "carol").allowed, "after the batch too");
		end);
		it("should refuse an invite deleted after its preauth", function ()
			local mod = load({ records = { T = record("T") } });
			local s = session();
			preauth(mod, s, "T");
			mod.stores.invite_token:set(nil, "T", nil);
			helpers.touch(mod.file);
			local event = register(mod, s, "alice");
			assert.is_false(event.allowed);
			assert.equal("The invite token is no longer valid", event.reason);
		end);
		it("should register with an invite that expired after its preauth", function ()
			local mod = load({ records = { T = record("T", { expires = os.time() + 1 }) } });
			local s = session();
			preauth(mod, s, "T");
			mod.stores.invite_token.data[false].T.expires = os.time() - 10;
			helpers.touch(mod.file);
			assert.is_true(register(mod, s, "alice").allowed);
		end);
		it("should refuse without an invite when invite-only", function ()
			local event = register(load(), session(), "nobody");
			assert.is_false(event.allowed);
			assert.equal("Registration on this server is through invitation only", event.reason);
		end);
		it("should hold bound invites to their name after nodeprep", function ()
			local mod = load({ records = { A = record("A", { jid = "Alice@example.com" }) } });
			local s = session();
			preauth(mod, s, "A");
			local wrong = register(mod, s, "mallory");
			assert.is_false(wrong.allowed);
			assert.equal("The chosen username is not valid with this invitation", wrong.reason);
			assert.is_true(register(mod, s, "alice").allowed);
		end);
		it("should reset only the named account", function ()
			local mod = load({ records = { X = record("X", { jid = "bob@example.com",
				additional_data = { allow_reset = "bob" } }) } });
			local s = session();
			preauth(mod, s, "X");
			assert.equal("Incorrect username for password reset", register(mod, s, "eve").reason);
			local event = register(mod, s, "bob");
			assert.is_true(event.allowed);
			assert.equal("bob", event.allow_reset);
			assert.equal(1, mod:metric_value("registrations", "reset"));
		end);
	end);

	describe("#reservation", function ()
		local function reserved_load(options)
			return load({ options = options, records = {
				A = record("A", { jid = "Alice@example.com" });
				T = record("T");
			} });
		end
		it("should keep a bound name for its invite", function ()
			local mod = reserved_load();
			local s = session();
			preauth(mod, s, "T");
			local event = register(mod, s, "alice");
			assert.is_false(event.allowed);
			assert.equal("The chosen username is reserved", event.reason);
			assert.equal(1, mod:metric_value("registrations", "reserved"));
			assert.is_true(register(mod, s, "bob").allowed, "the refusal burnt nothing");
			local owner = session();
			preauth(mod, owner, "A");
			assert.is_true(register(mod, owner, "alice").allowed);
		end);
		it("should refuse open registration of a reserved name", function ()
			local mod = reserved_load({ registration_invite_only = false });
			assert.equal("The chosen username is reserved", register(mod, session(), "ALICE").reason);
			assert.is_nil(register(mod, session(), "bob").reason);
		end);
		it("should free the name when its invite is deleted", function ()
			local mod = reserved_load({ registration_invite_only = false });
			mod.stores.invite_token:set(nil, "A", nil);
			helpers.touch(mod.file);
			assert.is_true(register(mod, session(), "alice").allowed);
		end);
	end);

	describe("#register-form", function ()
		local function form(mod, s)
			local iq = st.iq({ type = "get", id = "g1" }):tag("query", { xmlns = "jabber:iq:register" }):up();
			local template = st.stanza("query", { xmlns = "jabber:iq:register" })
				:tag("username"):up():tag("password"):up()
				:tag("x", { xmlns = "jabber:x:data", type = "form" })
					:tag("field", { var = "username", type = "text-single" }):up():up();
			mod.wrappers["stanza/iq/jabber:iq:register:query"](function ()
				s.send(st.reply(iq):add_child(template));
				return true;
			end, "stanza/iq/jabber:iq:register:query", { origin = s, stanza = iq });
			return s.sent[#s.sent], template;
		end
		it("should fill in the bound name and leave the template alone", function ()
			local mod = load({ records = { A = record("A", { jid = "Alice@example.com" }), T = record("T") } });
			local s = session();
			preauth(mod, s, "A");
			local reply, template = form(mod, s);
			local query = reply:get_child("query", "jabber:iq:register");
			assert.equal("alice", query:get_child_text("username"));
			assert.equal("alice", query:get_child("x", "jabber:x:data"):get_child("field"):get_child_text("value"));
			assert.equal("", template:get_child_text("username"));
			local plain = session();
			preauth(mod, plain, "T");
			assert.equal("", form(mod, plain):get_child("query", "jabber:iq:register"):get_child_text("username"));
		end);
	end);

	describe("#user-registered", function ()
		it("should befriend the inviter of a roster invite and delete both entries", function ()
			local mod, _, calls = load({ records = { R = record("R", { type = "roster", jid = "juliet@example.com" }) } });
			mod.stores.invite_token:set("juliet", "R", os.time() + 3600);
			helpers.touch(mod.file);
			local s = session();
			preauth(mod, s, "R");
			register(mod, s, "romeo");
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get(nil, "R"));
			assert.is_nil(mod.stores.invite_token:get("juliet", "R"));
			assert.equal("roster_push", calls[#calls][1]);
			assert.equal(9, #calls);
		end);
		it("should write 0.12 roles as a set", function ()
			local mod = load({ records = { A = record("A", { additional_data = { roles = { "prosody:admin" } } }) } });
			local s = session();
			preauth(mod, s, "A");
			register(mod, s, "boss");
			assert.same({ ["prosody:admin"] = true }, mod.stores.roles.data.boss);
		end);
		it("should use usermanager on 13 for role lists", function ()
			local set, added = {}, {};
			local um = {
				set_user_role = function (user, _, role) set[user] = role; return true; end;
				add_user_secondary_role = function (user, _, role)
					if role == "bogus" then error("unknown role"); end
					added[#added + 1] = user .. ":" .. role;
					return true;
				end;
			};
			local mod = load({ usermanager = um, records = {
				A = record("A", { additional_data = { roles = { "prosody:member", "x", "bogus" } } }) } });
			local s = session();
			preauth(mod, s, "A");
			register(mod, s, "m");
			assert.equal("prosody:member", set.m);
			assert.same({ "m:x" }, added);
			assert.equal(1, mod:logged("error", "Failed to grant role bogus"));
		end);
		it("should store a role set unchanged on 13 and warn", function ()
			local um = { set_user_role = function () error("must not be called"); end };
			local mod = load({ usermanager = um, records = {
				A = record("A", { additional_data = { roles = { ["prosody:admin"] = true } } }) } });
			local s = session();
			preauth(mod, s, "A");
			register(mod, s, "boss");
			assert.same({ ["prosody:admin"] = true }, mod.stores.roles.data.boss);
			assert.equal(1, mod:logged("warn", "migration"));
		end);
		it("should ignore roles of another shape", function ()
			local mod = load({ records = { A = record("A", { additional_data = { roles = { [2] = "x" } } }) } });
			local s = session();
			preauth(mod, s, "A");
			assert.is_true(register(mod, s, "odd").allowed);
			assert.is_nil(mod.stores.roles.data.odd);
			assert.equal(1, mod:logged("warn", "unexpected shape"));
		end);
	end);

	describe("#presence/bare", function ()
		local function subscribe(mod, to, token)
			local p = st.presence({ type = "subscribe", from = "romeo@example.com/x", to = to })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = token }):up();
			return mod:fire_event("presence/bare", { stanza = p });
		end
		it("should ignore a subscription without to", function ()
			local mod, _, calls = load();
			mod.stores.invite_token:set("juliet", "C", os.time() + 3600);
			assert.is_nil(subscribe(mod, nil, "C"));
			assert.equal(0, #calls);
		end);
		it("should approve a subscription with a contact token, once", function ()
			local mod, _, calls = load();
			mod.stores.invite_token:set("juliet", "C", os.time() + 3600);
			assert.is_nil(subscribe(mod, "juliet@example.com", "C"));
			assert.equal("set_contact_pending_in", calls[1][1]);
			assert.equal("romeo@example.com", calls[1][4]);
			local n = #calls;
			subscribe(mod, "juliet@example.com", "C");
			assert.equal(n, #calls, "consumed");
			flush(mod);
			assert.is_nil(mod.stores.invite_token:get("juliet", "C"));
		end);
	end);

	describe("#cleanup", function ()
		it("should delete expired invites and contact entries, keeping live ones", function ()
			local mod, env = load({ records = {
				old = record("old", { expires = os.time() - 10 });
				live = record("live");
			} });
			mod.stores.invite_token:set("juliet", "c-old", os.time() - 10);
			mod.stores.invite_token:set("juliet", "c-live", os.time() + 100);
			local removed, contacts, users = env.cleanup_now();
			assert.same({ 1, 1, 1 }, { removed, contacts, users });
			assert.is_nil(mod.stores.invite_token:get(nil, "old"));
			assert.is_not_nil(mod.stores.invite_token:get(nil, "live"));
			assert.is_nil(mod.stores.invite_token:get("juliet", "c-old"));
			assert.is_not_nil(mod.stores.invite_token:get("juliet", "c-live"));
			assert.equal(2, mod:metric_value("cleaned"));
			assert.equal(1, mod:logged("info", "Removed 1 expired invites and 1 expired contact invites of 1 users"));
		end);
		it("should answer the shell commands", function ()
			local mod = load({ records = { A = record("A", { jid = "alice@example.com" }) } });
			local shell = mod.shared_tables["/*/admin_shell/env"].invites_register;
			local printed = {};
			local self = { session = { print = function (line) printed[#printed + 1] = line; end } };
			local ok, summary = shell.status(self, "example.com");
			assert.is_true(ok);
			assert.equal("1 pending invites on example.com", summary);
			assert.matches("pending invites: +1", printed[1]);
			assert.matches("bound usernames: +1", printed[2]);
			assert.matches("index memory: +%d+%.%d MiB", printed[6]);
			ok, summary = shell.cleanup(self, "example.com");
			assert.is_true(ok);
			assert.matches("Removed 0 expired invites", summary);
			assert.is_nil(shell.status(self, "other.example"));
		end);
	end);

	describe("#metrics", function ()
		it("should report the index sizes at stats-update", function ()
			local mod = load({ records = { A = record("A", { jid = "alice@example.com" }), T = record("T") } });
			mod.global_hooks["stats-update"]();
			assert.equal(2, mod:metric_value("pending"));
			assert.equal(1, mod:metric_value("reserved"));
			assert.equal(0, mod:metric_value("claims"));
		end);
	end);
end);
