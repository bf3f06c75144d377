-- The native library's exports, called from a real Lua as the plugin calls them.
local helpers = require "spec.helpers";
local native = require "invites_register";

local NOW = os.time();

local function new_state(cfg)
	local c = {
		host = "example.com";
		invite_only = true;
		require_encryption = true;
		token_attempts = 10;
	};
	for k, v in pairs(cfg or {}) do c[k] = v; end
	return native.new(c);
end

-- put() with a record's fields, as the plugin passes them (names already nodeprepped).
local function put(state, token, f)
	f = f or {};
	return state:put(token, f.type or "register", f.jid or "example.com", f.expires or NOW + 3600,
		f.allow_registration ~= false, f.reusable, f.node, f.reset, f.uri, f.additional_data);
end

describe("invites_register", function ()
	describe("#new()", function ()
		it("should return a state and the defaults", function ()
			local state, settings = new_state();
			assert.is_userdata(state);
			assert.same({}, settings.errors);
			assert.equal(10, settings.token_attempts);
			assert.equal(64, settings.ipv6_prefix);
			assert.equal(3600, settings.cleanup_interval);
			assert.equal(2, settings.delete_delay);
			assert.is_false(state:tracks_file());
		end);
		it("should report each bad option and use its default", function ()
			for option, bad in pairs({ token_attempts = -1, ipv6_prefix = 129, cleanup_interval = 1.5,
				delete_delay = "later" }) do
				local _, settings = new_state({ [option] = bad });
				assert.equal(1, #settings.errors, option);
				assert.matches("invites_register_", settings.errors[1]);
			end
		end);
		it("should take fractional delete delays", function ()
			local _, settings = new_state({ delete_delay = 0.25 });
			assert.equal(0.25, settings.delete_delay);
		end);
	end);

	describe("#preauth_gate()", function ()
		it("should let a plausible token through to the lookup", function ()
			assert.is_true(new_state():preauth_gate("T", "192.0.2.1", true, true));
		end);
		it("should refuse plaintext identically for any token, uncounted", function ()
			local state = new_state({ token_attempts = 1 });
			local a = { state:preauth_gate("T", "192.0.2.1", false, true) };
			local b = { state:preauth_gate("nope", "192.0.2.1", false, true) };
			assert.same(a, b);
			assert.same({ false, "modify", "policy-violation", "Encryption is required", "encryption_required" }, a);
			assert.equal(0, state:status().throttled);
		end);
		it("should refuse another host's stream", function ()
			local ok, err_type, condition, _, label = new_state():preauth_gate("T", nil, true, false);
			assert.same({ false, "cancel", "service-unavailable", "wrong_host" }, { ok, err_type, condition, label });
		end);
		it("should throttle after the allowed failures, per IPv6 network", function ()
			local state = new_state({ token_attempts = 2 });
			for _, ip in ipairs({ "2001:db8::1", "2001:db8::2" }) do
				assert.is_false((state:preauth_judge("bogus", ip, false)));
			end
			local ok, err_type, _, text, label = state:preauth_gate("T", "2001:db8::3", true, true);
			assert.same({ false, "wait", "Too many invalid invite tokens, try again later", "throttled" },
				{ ok, err_type, text, label });
			assert.is_true(state:preauth_gate("T", "2001:db8:0:1::1", true, true));
		end);
		it("should refuse hostile values without raising", function ()
			local state = new_state();
			for _, token in ipairs({ 42, {}, true, "", ("x"):rep(1025), "\255\254" }) do
				assert.is_false((state:preauth_gate(token, {}, "yes", 1)));
				assert.is_false((state:preauth_judge(token, nil, false)));
			end
		end);
	end);

	describe("#preauth_judge()", function ()
		it("should return the invite's fields from the index", function ()
			local state = new_state();
			assert.is_true(put(state, "T", { uri = "xmpp:example.com?register;preauth=T" }));
			assert.same({ true, "register", nil, false, "xmpp:example.com?register;preauth=T" },
				{ state:preauth_judge("T", "192.0.2.1", false) });
		end);
		it("should keep other uris and none as stored", function ()
			local state = new_state();
			put(state, "W", { uri = "https://example.com/i/W" });
			put(state, "N", {});
			assert.equal("https://example.com/i/W", select(5, state:preauth_judge("W", nil, false)));
			assert.is_nil(select(5, state:preauth_judge("N", nil, false)));
		end);
		it("should give additional_data back as a literal that deserializes to it", function ()
			local state = new_state();
			local data = { groups = { "g1", "g2" }, roles = { ["prosody:member"] = true }, n = 1.5, k = 3,
				text = "a\"b\\c\n\0\255" };
			put(state, "T", { additional_data = data });
			local literal = select(6, state:preauth_judge("T", nil, false));
			assert.is_string(literal);
			assert.same(data, require "util.serialization".deserialize(literal));
		end);
		it("should mark additional_data it cannot keep", function ()
			local state = new_state();
			put(state, "T", { additional_data = { f = print } });
			assert.is_true(select(6, state:preauth_judge("T", nil, false)));
		end);
		it("should name the inviter of a roster invite", function ()
			local state = new_state();
			assert.is_true(put(state, "R", { type = "roster", jid = "juliet@example.com", node = "juliet" }));
			local ok, kind, inviter = state:preauth_judge("R", nil, false);
			assert.same({ true, "roster", "juliet" }, { ok, kind, inviter });
		end);
		it("should refuse expired, unknown and never-registering records", function ()
			local state = new_state();
			put(state, "old", { expires = NOW - 1 });
			assert.is_false(put(state, "off", { allow_registration = false }));
			assert.is_false(put(state, "odd", { type = "other" }));
			assert.is_false(put(state, "noinviter", { type = "roster", jid = "example.com" }));
			assert.is_false(state:put("nonum", "register", "example.com", "soon", true));
			for _, token in ipairs({ "old", "off", "odd", "noinviter", "nonum", "unknown" }) do
				local ok, _, condition = state:preauth_judge(token, nil, false);
				assert.is_false(ok, token);
				assert.equal("item-not-found", condition);
			end
		end);
		it("should never report valid when the read failed", function ()
			local state = new_state();
			put(state, "T");
			assert.is_false((state:preauth_judge("T", nil, true)));
		end);
	end);

	describe("#registering()", function ()
		local function state_with_invites(cfg)
			local state = new_state(cfg);
			put(state, "T");
			put(state, "A", { jid = "Alice@example.com", node = "alice" });
			put(state, "X", { jid = "bob@example.com", node = "bob", reset = "bob" });
			put(state, "F", { jid = "Fail@example.com", node = false });
			return state;
		end
		it("should allow, refuse and have no opinion as the policy says", function ()
			local state = state_with_invites();
			assert.same({ "allow" }, { state:registering(true, "T", "bob") });
			assert.same({ "allow", "bob" }, { state:registering(true, "X", "bob") });
			assert.same({ "refuse", "invite-required", "Registration on this server is through invitation only",
				"no_invite" }, { state:registering(false, nil, "bob") });
			assert.same({ "refuse", "token-used", "The invite token is no longer valid", "used" },
				{ state:registering(true, "gone", "bob") });
			assert.same({ "refuse", "token-used", "The invite token is no longer valid", "used" },
				{ state:registering(true, nil, "bob") });
			assert.equal("wrong-username", select(2, state:registering(true, "A", "mallory")));
			assert.equal("wrong-reset-username", select(2, state:registering(true, "X", "eve")));
			assert.same({ "none" }, { new_state({ invite_only = false }):registering(false, nil, "x") });
		end);
		it("should never match a name that failed nodeprep", function ()
			local state = state_with_invites();
			assert.equal("wrong-username", select(2, state:registering(true, "F", "")));
			assert.equal("wrong-username", select(2, state:registering(true, "F", nil)));
			assert.equal("wrong-username", select(2, state:registering(true, "A", nil)));
		end);
		it("should reserve bound names for their invite", function ()
			local state = state_with_invites();
			assert.same({ "refuse", "username-reserved", "The chosen username is reserved", "reserved" },
				{ state:registering(true, "T", "alice") });
			assert.same({ "allow" }, { state:registering(true, "A", "alice") });
			assert.same({ "A" }, { state:reserving("alice") });
			assert.same({}, { state:reserving("bob") }, "reset invites reserve nothing");
			local open = state_with_invites({ invite_only = false });
			assert.equal("username-reserved", select(2, open:registering(false, nil, "alice")));
		end);
	end);

	describe("#claim()", function ()
		it("should claim once, settle once and release", function ()
			local state = new_state();
			put(state, "T");
			local handle = state:claim("T");
			assert.is_string(handle);
			assert.equal("token-used", select(2, state:registering(true, "T", "bob")));
			assert.is_false(state:release("T", "not-the-handle"));
			assert.is_true(state:release("T", handle));
			handle = state:claim("T");
			assert.same({ "consumed", "invited", true }, { state:settle("T", handle) });
			assert.same({}, { state:settle("T", handle) }, "never twice");
			assert.same({ false, "The invite token is no longer valid" }, { state:claim("T") });
		end);
		it("should not claim reusable invites and settle them every time", function ()
			local state = new_state();
			put(state, "G", { reusable = true });
			assert.is_nil(state:claim("G"));
			assert.same({ "reusable", "invited" }, { state:settle("G", nil) });
			assert.same({ "reusable", "invited" }, { state:settle("G", nil) });
		end);
		it("should name the inviter whose entry to delete", function ()
			local state = new_state();
			put(state, "R", { type = "roster", jid = "juliet@example.com", node = "juliet" });
			assert.same({ "consumed", "invited", true, "juliet" }, { state:settle("R", state:claim("R")) });
		end);
	end);

	describe("#batch()", function ()
		it("should collect queued deletions into one batch and retry a failed one", function ()
			local state = new_state();
			put(state, "A");
			put(state, "R", { type = "roster", jid = "juliet@example.com", node = "juliet" });
			state:queue("A", true, nil);
			state:queue("R", true, "juliet");
			state:queue("C", false, "juliet");
			assert.is_false((state:preauth_judge("A", nil, false)), "refused while queued");
			assert.equal(3, state:status().awaiting_deletion);
			local batch = state:batch();
			assert.same({ "A", "R" }, batch.host);
			assert.same({ { "juliet", { "C", "R" } } }, batch.users);
			assert.same({}, state:batch_done(false));
			batch = state:batch();
			assert.same({ "A", "R" }, batch.host);
			local gone = state:batch_done(true);
			table.sort(gone);
			assert.same({ "A", "C", "R" }, gone);
			assert.is_nil(state:batch());
			assert.equal(0, state:status().pending);
		end);
		it("should refuse restored markers at once", function ()
			local state = new_state();
			put(state, "M");
			state:restore("M", true, nil);
			assert.is_false((state:preauth_judge("M", nil, false)));
			assert.same({ "M" }, state:batch().host);
		end);
		it("should stretch the interval to keep writes within 5 % of the time", function ()
			assert.equal(2, native.next_interval(2, 0.01));
			assert.equal(20, native.next_interval(2, 1));
		end);
	end);

	describe("#stale()", function ()
		local function touch(path, content)
			helpers.touch(path, content);
		end
		it("should follow the store file's identity", function ()
			local path = helpers.store_file();
			local state = new_state({ store_file = path });
			assert.is_true(state:tracks_file());
			assert.is_true(state:stale(), "never loaded");
			state:load_begin();
			put(state, "T");
			assert.equal(1, state:load_end());
			assert.is_false(state:stale());
			touch(path, "return {};");
			assert.is_true(state:stale());
			state:load_begin();
			state:load_end();
			local fresh = state:write_begin();
			assert.is_true(fresh);
			touch(path, "return { a = 1 };");
			state:write_end(fresh);
			assert.is_false(state:stale(), "our own write");
			state:creation_begin();
			touch(path, "return { b = 1 };");
			assert.is_true(state:creation_end());
			assert.is_false(state:stale(), "mod_invites' write of an announced invite");
			os.remove(path);
			assert.is_true(state:stale());
			state:load_abort();
			assert.equal(0, state:status().pending);
			assert.is_true(state:stale());
		end);
	end);

	describe("#cleanup", function ()
		it("should list expired records and forget cleaned ones", function ()
			local state = new_state();
			put(state, "old", { expires = NOW - 100 });
			put(state, "new");
			assert.same({ "old" }, state:expired());
			state:cleaned({ "old" });
			assert.same({}, state:expired());
			assert.equal(1, state:status().pending);
		end);
		it("should spare an expired invite a client just validated", function ()
			local state = new_state();
			put(state, "late", { expires = os.time() + 60 }); -- live when validated
			assert.is_true((state:preauth_judge("late", nil, false)));
			put(state, "late", { expires = NOW - 1 });
			assert.same({}, state:expired());
		end);
	end);

	describe("#contact_valid()", function ()
		it("should accept a live entry once", function ()
			local state = new_state();
			assert.is_true(state:contact_valid("C", NOW + 10));
			assert.is_false(state:contact_valid("C", NOW - 10));
			assert.is_false(state:contact_valid("C", "soon"));
			assert.is_false(state:consume_contact("C", "juliet", NOW + 10));
			assert.is_false(state:contact_valid("C", NOW + 10));
		end);
	end);
end);
