-- The Lua plugin with a mocked `module`: hooks, fail-closed loading, registration
-- flow, consumption and the two role branches (0.12 store, 13 usermanager).
local helpers = require "spec.helpers";
local st = helpers.st;

local LIB_DIR = os.getenv("INVITES_REGISTER_LIB_DIR") or "build/lua5.4";

local function fake_modulemanager(loaded)
	return { is_loaded = function (_, name) return loaded[name] or false; end };
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

-- Loads the plugin; returns the mock module, the roster calls and the usermanager.
local function load(opts)
	opts = opts or {};
	local mod = helpers.mock_module({ directory = opts.directory or LIB_DIR, options = opts.options });
	local calls = {};
	local um = opts.usermanager or {};
	helpers.load_plugin(mod, {
		["core.modulemanager"] = fake_modulemanager(opts.loaded or { register_ibr = true });
		["core.rostermanager"] = fake_rostermanager(calls);
		["core.usermanager"] = um;
	});
	return mod, calls, um;
end

local function add_invite(mod, token, fields)
	local r = { type = "register", jid = mod.host, token = token, expires = os.time() + 3600 };
	for k, v in pairs(fields or {}) do r[k] = v; end
	mod.stores.invite_token:set(nil, token, r);
	return r;
end

local function preauth(mod, session, token)
	local iq = st.iq({ type = "set", id = "p1" }):tag("preauth", { xmlns = "urn:xmpp:pars:0", token = token }):up();
	local handled = mod:fire_event("stanza/iq/urn:xmpp:pars:0:preauth", { origin = session, stanza = iq });
	assert.is_true(handled);
	return session.sent[#session.sent];
end

-- Runs the IBR flow as mod_register_ibr would: registering, then registered if allowed.
local function register(mod, session, username)
	local event = { username = username, host = mod.host, session = session, allowed = true };
	mod.wrappers["stanza/iq/jabber:iq:register:query"](function ()
		mod:fire_event("user-registering", event);
		if event.allowed then
			mod:fire_event("user-registered", { username = username, host = mod.host, session = session });
		end
		return true;
	end, "stanza/iq/jabber:iq:register:query", { origin = session });
	return event;
end

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
			assert.equal(1, #mod.logs);
			assert.equal("error", mod.logs[1][1]);
			assert.matches("make install", mod.logs[1][2]);
			assert.is_nil(mod.hooks["stream-features"]);
			local event = { username = "a", allowed = true };
			mod:fire_event("user-registering", event);
			assert.is_false(event.allowed);
			assert.equal("Registration is temporarily unavailable", event.reason);
		end);
		it("should log an error for a bad token_attempts option", function ()
			local mod = load({ options = { invites_register_token_attempts = -3 } });
			assert.equal("error", mod.logs[1][1]);
			assert.matches("invites_register_token_attempts", mod.logs[1][2]);
		end);
	end);

	describe("#stream-features", function ()
		local function features(mod, session)
			local f = st.stanza("features");
			mod:fire_event("stream-features", { origin = session, features = f });
			return f;
		end
		it("should advertise both features on secure unauthenticated streams", function ()
			local f = features(load(), helpers.session());
			assert.equal(2, #f.tags);
			assert.equal("urn:xmpp:invite", f.tags[1].attr.xmlns);
			assert.equal("urn:xmpp:ibr-token:0", f.tags[2].attr.xmlns);
		end);
		it("should advertise nothing on plaintext, after login, or without IBR", function ()
			assert.equal(0, #features(load(), helpers.session({ secure = false })).tags);
			assert.equal(0, #features(load(), helpers.session({ type = "c2s" })).tags);
			assert.equal(0, #features(load({ loaded = {} }), helpers.session()).tags);
		end);
	end);

	describe("#preauth", function ()
		it("should store a valid invite on the session", function ()
			local mod = load();
			add_invite(mod, "T");
			local session = helpers.session();
			local reply = preauth(mod, session, "T");
			assert.equal("result", reply.attr.type);
			local invite = session.validated_invite;
			assert.equal("T", invite.token);
			assert.equal("register", invite.type);
			assert.equal("example.com", invite.host);
			assert.is_false(invite.reusable);
			assert.is_nil(invite.inviter);
			assert.is_function(invite.use);
		end);
		it("should answer with the stanza st.reply builds", function ()
			local mod = load();
			add_invite(mod, "T");
			local session = helpers.session();
			local iq = st.iq({ type = "set", id = "q'7", to = "example.com", from = "c@example.net/r" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "T" }):up();
			assert.is_true(mod:fire_event("stanza/iq/urn:xmpp:pars:0:preauth", { origin = session, stanza = iq }));
			local reply = session.sent[#session.sent];
			assert.is_true(st.is_stanza(reply));
			assert.same(st.reply(iq).attr, reply.attr);
			assert.equal(tostring(st.reply(iq)), tostring(reply));
			reply:tag("x"):up();
			assert.equal(1, #reply.tags);
		end);
		it("should read mod_invites' fields from the record it keeps", function ()
			local mod = load();
			add_invite(mod, "T", { type = "register", jid = "example.com", reusable = true,
				uri = "xmpp:example.com?register;preauth=T" });
			local session = helpers.session();
			preauth(mod, session, "T");
			local invite = session.validated_invite;
			assert.is_true(invite.reusable);
			assert.equal("xmpp:example.com?register;preauth=T", invite.uri);
			assert.is_nil(invite.additional_data);
			assert.is_nil(invite.username);
			assert.is_nil(invite.no_such_field);
		end);
		it("should name the inviter and keep additional_data of a roster invite", function ()
			local mod = load();
			add_invite(mod, "R", { type = "roster", jid = "juliet@example.com", allow_registration = "true",
				additional_data = { groups = { "g" } } });
			local session = helpers.session();
			preauth(mod, session, "R");
			local invite = session.validated_invite;
			assert.equal("juliet", invite.inviter);
			assert.equal("juliet", invite.username);
			assert.same({ groups = { "g" } }, invite.additional_data);
		end);
		it("should not clear an earlier valid invite on a later failure", function ()
			local mod = load();
			add_invite(mod, "T");
			local session = helpers.session();
			preauth(mod, session, "T");
			local reply = preauth(mod, session, "bogus");
			assert.equal("error", reply.attr.type);
			assert.equal("T", session.validated_invite.token);
		end);
		it("should never report valid when the storage read fails", function ()
			local mod = load();
			add_invite(mod, "T");
			mod.stores.invite_token.fail_reads = true;
			local session = helpers.session();
			local reply = preauth(mod, session, "T");
			assert.equal("item-not-found", reply.tags[1].tags[1].name);
			assert.is_nil(session.validated_invite);
		end);
	end);

	describe("#user-registering", function ()
		it("should consume a single-use token once", function ()
			local mod = load();
			add_invite(mod, "T");
			local session = helpers.session();
			preauth(mod, session, "T");
			assert.is_true(register(mod, session, "alice").allowed);
			assert.is_nil(mod.stores.invite_token:get(nil, "T"));
			local second = register(mod, session, "bob");
			assert.is_false(second.allowed);
			assert.equal("The invite token is no longer valid", second.reason);
		end);
		it("should release the claim when IBR fails after allowing", function ()
			local mod = load();
			add_invite(mod, "T");
			local session = helpers.session();
			preauth(mod, session, "T");
			local event = { username = "taken", host = mod.host, session = session, allowed = true };
			mod.wrappers["stanza/iq/jabber:iq:register:query"](function ()
				mod:fire_event("user-registering", event); -- allowed, then "conflict": no event
				return true;
			end, "stanza/iq/jabber:iq:register:query", { origin = session });
			assert.is_true(event.allowed);
			assert.is_true(register(mod, session, "alice").allowed);
		end);
		it("should not claim when a later voter refuses", function ()
			local mod = load();
			add_invite(mod, "T");
			mod:hook("user-registering", function (event) event.allowed = false; end, -10);
			local session = helpers.session();
			preauth(mod, session, "T");
			register(mod, session, "alice");
			assert.is_not_nil(mod.stores.invite_token:get(nil, "T"));
		end);
		it("should judge a front-end invite by the stored record", function ()
			local mod = load();
			add_invite(mod, "F");
			local invite = { token = "F", type = "register", reusable = false };
			local event = { username = "alice", host = mod.host, validated_invite = invite, allowed = true };
			mod:fire_event("user-registering", event);
			assert.is_true(event.allowed);
			mod:fire_event("user-registered", { username = "alice", validated_invite = invite });
			assert.is_nil(mod.stores.invite_token:get(nil, "F"));
			local again = { username = "bob", host = mod.host, validated_invite = invite, allowed = true };
			mod:fire_event("user-registering", again);
			assert.is_false(again.allowed);
		end);
	end);

	describe("#user-registered", function ()
		it("should befriend the inviter of a roster invite and delete both entries", function ()
			local mod, calls = load();
			add_invite(mod, "R", { type = "roster", jid = "juliet@example.com", allow_registration = true });
			mod.stores.invite_token:set("juliet", "R", os.time() + 3600);
			local session = helpers.session();
			preauth(mod, session, "R");
			register(mod, session, "romeo");
			assert.is_nil(mod.stores.invite_token:get(nil, "R"));
			assert.is_nil(mod.stores.invite_token:get("juliet", "R"));
			local names = {};
			for _, c in ipairs(calls) do names[#names + 1] = c[1]; end
			assert.equal("roster_push", names[#names]);
			assert.equal(9, #calls);
		end);
		it("should write 0.12 roles as a set", function ()
			local mod = load();
			add_invite(mod, "A", { additional_data = { roles = { "prosody:admin" } } });
			local session = helpers.session();
			preauth(mod, session, "A");
			register(mod, session, "boss");
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
			local mod = load({ usermanager = um });
			add_invite(mod, "A", { additional_data = { roles = { "prosody:member", "x", "bogus" } } });
			local session = helpers.session();
			preauth(mod, session, "A");
			register(mod, session, "m");
			assert.equal("prosody:member", set.m);
			assert.same({ "m:x" }, added);
			local errors = 0;
			for _, l in ipairs(mod.logs) do if l[1] == "error" then errors = errors + 1; end end
			assert.equal(1, errors);
		end);
		it("should store a role set unchanged on 13 and warn", function ()
			local um = { set_user_role = function () error("must not be called"); end };
			local mod = load({ usermanager = um });
			add_invite(mod, "A", { additional_data = { roles = { ["prosody:admin"] = true } } });
			local session = helpers.session();
			preauth(mod, session, "A");
			register(mod, session, "boss");
			assert.same({ ["prosody:admin"] = true }, mod.stores.roles.data.boss);
			assert.matches("migration", mod.logs[#mod.logs][2]);
		end);
	end);

	describe("#presence/bare", function ()
		it("should ignore a subscription without to", function ()
			local mod, calls = load();
			mod.stores.invite_token:set("juliet", "C", os.time() + 3600);
			local p = st.presence({ type = "subscribe", from = "romeo@example.com/x" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "C" }):up();
			assert.is_nil(mod:fire_event("presence/bare", { stanza = p }));
			assert.equal(0, #calls);
			assert.is_not_nil(mod.stores.invite_token:get("juliet", "C"));
		end);
		it("should approve a subscription with a contact token and consume it", function ()
			local mod, calls = load();
			mod.stores.invite_token:set("juliet", "C", os.time() + 3600);
			local p = st.presence({ type = "subscribe", from = "romeo@example.com/x", to = "juliet@example.com" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "C" }):up();
			assert.is_nil(mod:fire_event("presence/bare", { stanza = p }));
			assert.is_nil(mod.stores.invite_token:get("juliet", "C"));
			assert.equal("set_contact_pending_in", calls[1][1]);
			assert.equal("romeo@example.com", calls[1][4]);
		end);
	end);
end);
