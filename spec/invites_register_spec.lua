-- The native library's exports, called from a real Lua as Prosody would call them.
local helpers = require "spec.helpers";
local st = helpers.st;
local native = require "invites_register";

local hosts = setmetatable({}, { __mode = "k" });
local function state_host(state) return hosts[state] or "example.com"; end

local function new_state(cfg)
	local c = {
		host = "example.com";
		invite_only = true;
		require_encryption = true;
		token_attempts = 10;
		nodeprep = function (s) return (s:lower():gsub("[^%w%-_%.]", "")); end;
		stanza_mt = st.stanza_mt;
	};
	for k, v in pairs(cfg or {}) do c[k] = v; end
	local state, warning = native.new(c);
	hosts[state] = c.host;
	return state, warning;
end

-- A state's plain C functions (`state:functions()`, made once per state).
local functions_of = setmetatable({}, { __mode = "k" });
local function fn(state)
	if not functions_of[state] then
		functions_of[state] = state:functions();
	end
	return functions_of[state];
end
local function native_preauth(state, ...)
	return fn(state).preauth(...);
end
local function native_finish(state, ...)
	return fn(state).preauth_finish(...);
end

local function preauth_iq(token, attrs)
	local iq = st.iq(attrs or { type = "set", id = "p1" });
	iq:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = token });
	return iq;
end

local function record(fields)
	local r = { type = "register", jid = "example.com", token = "T", expires = os.time() + 3600, uri = "xmpp:example.com?register;preauth=T" };
	for k, v in pairs(fields or {}) do r[k] = v; end
	return r;
end

-- Sends the library's decision the way the plugin does: st.reply, or st.error_reply with
-- the type, condition and text it returned.
local function reply_for(iq, ok, err_type, condition, text)
	if ok then return st.reply(iq); end
	return st.error_reply(iq, err_type, condition, text);
end

-- The first half of a preauth as a reply stanza (nil when a lookup is due) and the token.
local function begin(state, iq, ip, secure, same_host)
	local token, err_type, condition, text = native_preauth(state, iq, ip, secure, same_host);
	if token then return nil, token; end
	return reply_for(iq, false, err_type, condition, text);
end

-- Runs both halves of a preauth with `rec` as the stored record; on success returns the
-- reply and an invite table shaped as the plugin makes it.
local function preauth(state, token, rec, err, origin)
	origin = origin or {};
	local iq = preauth_iq(token);
	local ip = origin.ip or "192.0.2.1";
	local reply = begin(state, iq, ip, origin.secure ~= false, origin.same_host ~= false);
	if reply then return reply; end
	local valid, a, b, c = native_finish(state, token, ip, rec, err);
	if not valid then return reply_for(iq, false, a, b, c); end
	return st.reply(iq), {
		token = token; type = rec.type; additional_data = rec.additional_data; host = state_host(state);
		reusable = not not rec.reusable; inviter = a; username = a; _record = rec;
	}, valid;
end

describe("invites_register", function ()
	describe("#new()", function ()
		it("should return a state and no warning for valid options", function ()
			local state, warning = new_state();
			assert.is_userdata(state);
			assert.is_nil(warning);
		end);
		it("should warn and use the default for a bad token_attempts", function ()
			for _, bad in ipairs({ -1, 2.5, "lots", true }) do
				local state, warning = new_state({ token_attempts = bad });
				assert.is_userdata(state);
				assert.matches("invites_register_token_attempts", warning);
			end
		end);
	end);

	describe("#features()", function ()
		it("should return both register features as stanzas, legacy first", function ()
			local f = new_state():features();
			assert.equal(2, #f);
			assert.truthy(st.is_stanza(f[1]));
			assert.equal("<register xmlns='urn:xmpp:invite'/>", tostring(f[1]));
			assert.equal("<register xmlns='urn:xmpp:ibr-token:0'/>", tostring(f[2]));
		end);
	end);

	describe("#preauth()", function ()
		it("should ask for a lookup of a plausible token", function ()
			local token, err_type = native_preauth(new_state(), preauth_iq("T"), "192.0.2.1", true, true);
			assert.equal("T", token);
			assert.is_nil(err_type);
		end);
		it("should refuse plaintext identically for valid and invalid tokens", function ()
			local state = new_state();
			local a = begin(state, preauth_iq("T"), "192.0.2.1", false, true);
			local b = begin(state, preauth_iq("nope"), "192.0.2.1", false, true);
			assert.equal(tostring(a), tostring(b));
			assert.equal("modify", a.tags[1].attr.type);
			assert.equal("policy-violation", a.tags[1].tags[1].name);
		end);
		it("should answer service-unavailable for another host", function ()
			local reply = begin(new_state(), preauth_iq("T"), "192.0.2.1", true, false);
			assert.equal("service-unavailable", reply.tags[1].tags[1].name);
		end);
		it("should return the spec's type, condition and text for an empty token", function ()
			local iq = st.iq({ type = "get", id = "x1", to = "example.com" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "" }):up();
			assert.same({ nil, "cancel", "item-not-found", "The provided token is invalid or expired" },
				{ native_preauth(new_state(), iq, "192.0.2.1", true, true) });
		end);
		it("should report a malformed stanza as bad-request", function ()
			local not_preauth = st.iq({ type = "set", id = "b" }):tag("query", { xmlns = "jabber:iq:version" }):up();
			local token, err_type, condition = native_preauth(new_state(), not_preauth, "192.0.2.1", true, true);
			assert.is_nil(token);
			assert.equal("modify", err_type);
			assert.equal("bad-request", condition);
		end);
	end);

	describe("#functions()", function ()
		it("should refuse odd arguments without raising", function ()
			local state = new_state();
			local tagless = setmetatable({ name = "iq", attr = {} }, st.stanza_mt);
			local odd_child = st.iq({ type = "set", id = "o" });
			odd_child.tags[1] = "preauth";
			local attrless = st.iq({ type = "set", id = "o" });
			attrless.tags[1] = { name = "preauth" };
			for _, stanza in ipairs({ nil, 1, "<iq/>", {}, tagless, odd_child, attrless,
				preauth_iq(nil), st.iq({ type = "set", id = "n" }):tag("preauth", { token = "T" }):up() }) do
				local token, err_type = native_preauth(state, stanza, "192.0.2.1", true, true);
				assert.is_nil(token);
				assert.equal("string", type(err_type));
			end
			for _, ip in ipairs({ nil, 7, {}, "\255" }) do
				assert.equal("T", (native_preauth(state, preauth_iq("T"), ip, true, true)));
			end
			for _, token in ipairs({ nil, 5, {}, "\255\254" }) do
				local valid, err_type = native_finish(state, token, "192.0.2.1", record(), nil);
				assert.is_nil(valid);
				assert.equal("cancel", err_type);
			end
			for _, rec in ipairs({ 1, "x", record({ expires = "4102444800" }), record({ type = 1 }),
				record({ type = "roster", jid = {} }), record({ type = "roster", jid = "@example.com" }),
				record({ type = "roster", jid = ("x"):rep(2000) .. "@example.com" }) }) do
				local valid, err_type = native_finish(state, "T", "192.0.2.1", rec, nil);
				assert.is_nil(valid);
				assert.equal("cancel", err_type);
			end
		end);
		it("should keep working after the state itself is collected", function ()
			local fns = new_state():functions();
			local p, f = fns.preauth, fns.preauth_finish;
			collectgarbage(); collectgarbage();
			assert.equal("T", (p(preauth_iq("T"), "192.0.2.1", true, true)));
			assert.same({ true }, { f("T", "192.0.2.1", record(), nil) });
		end);
		it("should share the throttle with the state's other functions", function ()
			local state = new_state({ token_attempts = 1 });
			local p1 = state:functions().preauth;
			local f2 = state:functions().preauth_finish;
			assert.is_nil((f2("x", "192.0.2.9", nil, nil)));
			local token, err_type, condition = p1(preauth_iq("T"), "192.0.2.9", true, true);
			assert.is_nil(token);
			assert.equal("wait", err_type);
			assert.equal("policy-violation", condition);
		end);
	end);

	describe("#preauth_finish()", function ()
		it("should return a result and validity for a valid record", function ()
			local state = new_state();
			local reply, invite, valid = preauth(state, "T", record({ additional_data = { groups = { "g" } } }));
			assert.equal("result", reply.attr.type);
			assert.is_true(valid);
			assert.is_nil(invite.inviter);
			assert.equal("register", fn(state).kind(invite));
			assert.is_nil(fn(new_state({ host = "other.example" })).kind(invite));
		end);
		it("should name the inviter of a roster invite", function ()
			local _, invite = preauth(new_state(), "T", record({ type = "roster", jid = "juliet@example.com", allow_registration = "true" }));
			assert.equal("juliet", invite.inviter);
			assert.equal("juliet", invite.username);
		end);
		it("should treat odd records and storage errors as invalid", function ()
			local state = new_state();
			for _, rec in ipairs({ 42, "x", {}, record({ expires = "soon" }), record({ type = "nope" }),
				record({ allow_registration = false }), record({ expires = os.time() - 1 }) }) do
				local reply, invite = preauth(state, "T", rec);
				assert.is_nil(invite);
				assert.equal("item-not-found", reply.tags[1].tags[1].name);
			end
			local reply, invite = preauth(new_state(), "T", record(), "db down");
			assert.is_nil(invite);
			assert.equal("item-not-found", reply.tags[1].tags[1].name);
		end);
		it("should throttle after token_attempts failures without a lookup", function ()
			local state = new_state({ token_attempts = 2 });
			preauth(state, "a", nil);
			preauth(state, "b", nil);
			local reply, token = begin(state, preauth_iq("T"), "192.0.2.1", true, true);
			assert.is_nil(token);
			assert.equal("wait", reply.tags[1].attr.type);
			assert.equal("Too many invalid invite tokens, try again later", reply:get_child_text("error") or
				reply.tags[1]:get_child_text("text", "urn:ietf:params:xml:ns:xmpp-stanzas"));
			assert.equal(1, state:stats().throttled_addresses);
		end);
	end);

	describe("#registering()", function ()
		it("should refuse without an invite when invite-only", function ()
			local ok, code, reason = fn(new_state()).registering(nil, "alice", false, nil);
			assert.is_nil(ok);
			assert.equal("invite-required", code);
			assert.equal("Registration on this server is through invitation only", reason);
		end);
		it("should have no opinion without an invite when not invite-only", function ()
			assert.is_false(fn(new_state({ invite_only = false })).registering(nil, "alice", false, nil));
		end);
		it("should enforce username binding after nodeprep", function ()
			local state = new_state();
			local _, invite = preauth(state, "T", record({ jid = "Alice@example.com" }));
			local ok, code = fn(state).registering(invite, "mallory", false, nil);
			assert.is_nil(ok);
			assert.equal("wrong-username", code);
			assert.is_true(fn(state).registering(invite, "ALICE", false, nil));
		end);
		it("should limit a reset invite to its user", function ()
			local state = new_state();
			local _, invite = preauth(state, "T", record({ jid = "bob@example.com", additional_data = { allow_reset = "bob" } }));
			local ok, code = fn(state).registering(invite, "eve", false, nil);
			assert.is_nil(ok);
			assert.equal("wrong-reset-username", code);
			assert.equal("bob", fn(state).registering(invite, "bob", false, nil));
		end);
		it("should refuse odd invites and survive a failing nodeprep without raising", function ()
			local state = new_state();
			for _, invite in ipairs({ 5, "T", {}, { _record = 5 }, { _record = {}, host = 1 },
				{ _record = record(), host = "other.example", token = "T" } }) do
				local ok, code = fn(state).registering(invite, "alice", false, nil);
				assert.is_nil(ok);
				assert.equal("string", type(code));
				assert.is_nil(fn(state).claim(invite));
				assert.is_false(fn(state).settle(invite, "h"));
				assert.is_false(fn(state).release(invite, "h"));
			end
			local raising = new_state({ nodeprep = function () error("boom"); end });
			local _, invite = preauth(raising, "T", record({ jid = "alice@example.com" }));
			local ok, code = fn(raising).registering(invite, "alice", false, nil);
			assert.is_nil(ok);
			assert.equal("wrong-username", code);
			local handle = fn(state).claim({ token = "F" });
			assert.equal("string", type(handle));
			assert.is_false(fn(state).settle({ token = "F" }, 42));
			assert.is_true(fn(state).settle({ token = "F" }, handle));
		end);
		it("should ignore an invite validated on another host", function ()
			local other = new_state({ host = "other.example" });
			local _, invite = preauth(other, "T", record());
			local ok, code = fn(new_state()).registering(invite, "alice", false, nil);
			assert.is_nil(ok);
			assert.equal("invite-required", code);
		end);
		it("should judge a front-end invite by its re-read record", function ()
			local state = new_state();
			local foreign = { token = "F", type = "register" };
			assert.equal("F", fn(state).lookup_token(foreign));
			assert.is_true(fn(state).registering(foreign, "alice", false, record({ token = "F" })));
			local ok, code = fn(state).registering(foreign, "alice", false, nil);
			assert.is_nil(ok);
			assert.equal("token-used", code);
		end);
	end);

	describe("#claim()", function ()
		it("should make a single-use token unusable until released", function ()
			local state = new_state();
			local _, a = preauth(state, "T", record());
			local _, b = preauth(state, "T", record());
			local handle = fn(state).claim(a);
			assert.is_string(handle);
			local ok, code = fn(state).registering(b, "bob", false, nil);
			assert.is_nil(ok);
			assert.equal("token-used", code);
			assert.is_nil(fn(state).claim(b));
			assert.is_true(fn(state).release(a, handle));
			assert.is_true(fn(state).registering(b, "bob", false, nil));
		end);
		it("should consume on settle, once", function ()
			local state = new_state();
			local _, a = preauth(state, "T", record());
			local handle = fn(state).claim(a);
			assert.is_true(fn(state).settle(a, handle));
			assert.is_false(fn(state).settle(a, handle));
			assert.is_nil(fn(state).registering(a, "x", false, nil));
			local reply, invite = preauth(state, "T", record());
			assert.is_nil(invite, "consumed tokens are invalid at preauth");
			assert.equal("item-not-found", reply.tags[1].tags[1].name);
		end);
		it("should never claim reusable tokens", function ()
			local state = new_state();
			local _, a = preauth(state, "T", record({ reusable = true }));
			assert.is_nil(fn(state).claim(a));
			assert.is_true(fn(state).settle(a, nil));
			assert.is_true(fn(state).registering(a, "x", false, nil));
		end);
	end);

	describe("#subscribe_token()", function ()
		it("should find the token of a XEP-0379 subscription", function ()
			local p = st.presence({ type = "subscribe", to = "juliet@example.com" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "C1" }):up();
			assert.equal("C1", new_state():subscribe_token(p));
			assert.equal("C1", new_state():subscribe_token(tostring(p)), "serialised stanzas are parsed with quick-xml");
			assert.is_nil(new_state():subscribe_token(st.presence({ type = "subscribe" })));
			assert.is_nil(new_state():subscribe_token(st.presence({ type = "subscribed" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "C1" }):up()));
		end);
		it("should read a token that Prosody would serialise with a bad xml: prefix", function ()
			local p = st.presence({ type = "subscribe", to = "juliet@example.com",
				["http://www.w3.org/XML/1998/namespace\1foo"] = "1" })
				:tag("preauth", { xmlns = "urn:xmpp:pars:0", token = "C2" }):up();
			assert.equal("C2", new_state():subscribe_token(p));
		end);
	end);

	describe("#contact_valid()", function ()
		it("should accept unexpired entries not yet consumed", function ()
			local state = new_state();
			assert.is_true(state:contact_valid("C", os.time() + 10));
			assert.is_false(state:contact_valid("C", os.time() - 10));
			assert.is_false(state:contact_valid("C", "tomorrow"));
			state:consumed("C", os.time() + 10);
			assert.is_false(state:contact_valid("C", os.time() + 10));
		end);
	end);

	describe("#roles()", function ()
		it("should tell lists from sets", function ()
			local state = new_state();
			local kind, names = state:roles({ "prosody:admin", "x" });
			assert.equal("list", kind);
			assert.same({ "prosody:admin", "x" }, names);
			kind, names = state:roles({ ["prosody:admin"] = true });
			assert.equal("set", kind);
			assert.same({ "prosody:admin" }, names);
			local none, code = state:roles({ admin = "yes" });
			assert.is_nil(none);
			assert.equal("invalid-roles", code);
		end);
	end);
end);
